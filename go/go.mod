module github.com/datago-dev/datago

go 1.22

require (
	golang.org/x/image v0.24.0
	golang.org/x/sync v0.11.0
)
