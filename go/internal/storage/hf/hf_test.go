package hf

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]Location{
		"hf://datasets/org/name":                 {Repo: "org/name"},
		"hf://datasets/org/name/":                {Repo: "org/name"},
		"hf://datasets/org/name/a/b.tar":         {Repo: "org/name", Path: "a/b.tar"},
		"hf://datasets/org/name@v1.0/imgs/":      {Repo: "org/name", Revision: "v1.0", Path: "imgs/"},
		"hf://datasets/org/name@refs%2Fpr%2F1/x": {Repo: "org/name", Revision: "refs/pr/1", Path: "x"},
	} {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for in, msg := range map[string]string{
		"hf://models/org/name/x": "only dataset repositories",
		"hf://datasets/org":      "names no repository",
		"hf://datasets//name/x":  "names no repository",
		"hf://datasets/org/n@/x": "empty revision",
		"s3://b/k":               "not an hf:// URL",
	} {
		if _, err := Parse(in); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("Parse(%q): got %v, want %q", in, err, msg)
		}
	}
	loc, _ := Parse("hf://datasets/org/name@v1/imgs")
	if u := loc.url("imgs/a.jpg"); u != "hf://datasets/org/name@v1/imgs/a.jpg" {
		t.Errorf("url: %s", u)
	}
	loc, _ = Parse("hf://datasets/org/name@refs%2Fpr%2F1/imgs")
	if u := loc.url("imgs/a.jpg"); u != "hf://datasets/org/name@refs%2Fpr%2F1/imgs/a.jpg" {
		t.Errorf("url: %s", u)
	}
}

func TestNextLink(t *testing.T) {
	h := `<https://huggingface.co/api/datasets/o/n/tree/main?cursor=abc>; rel="next", <https://x>; rel="prev"`
	if got := nextLink(h); got != "https://huggingface.co/api/datasets/o/n/tree/main?cursor=abc" {
		t.Errorf("got %q", got)
	}
	if nextLink("") != "" || nextLink(`<https://x>; rel="prev"`) != "" {
		t.Error("no next link expected")
	}
}
