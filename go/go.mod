module github.com/datago-dev/datago

go 1.22
