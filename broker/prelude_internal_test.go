package broker

import (
	"slices"
	"strings"
	"testing"
)

// Each script gets the helpers it uses and those they use, in prelude's
// order, and nothing else.
func TestPreludeFor(t *testing.T) {
	names := func(body string) []string {
		var out []string
		for _, h := range helpers {
			if strings.Contains(preludeFor(body), "local function "+h.name+"(") || strings.Contains(preludeFor(body), "local "+h.name+" =") {
				out = append(out, h.name)
			}
		}
		return out
	}
	if got := names("return 1"); len(got) != 0 {
		t.Errorf("a body without helpers gets %v", got)
	}
	if got, want := names("local v = claimed(x, us, w)"), []string{"parse", "pack", "claimed"}; !slices.Equal(got, want) {
		t.Errorf("claimed pulls in %v, want %v", got, want)
	}
	if got, want := names("back(a, b, c, items)"), []string{"num", "score", "parse", "back"}; !slices.Equal(got, want) {
		t.Errorf("back pulls in %v, want %v", got, want)
	}
	// A helper's name inside another word, or in a comment, is not a use.
	if got, want := names("local x = band1 -- not back, nor num("), []string{"band1"}; !slices.Equal(got, want) {
		t.Errorf("band1 pulls in %v, want %v", got, want)
	}
	// Every helper of prelude was found, with its own text.
	var all strings.Builder
	for _, h := range helpers {
		all.WriteString(h.src)
	}
	if strings.TrimSpace(all.String()) != strings.TrimSpace(prelude) {
		t.Errorf("the helpers do not add up to prelude:\n%s", all.String())
	}
}
