package examples

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every ```go block of README.md is an excerpt of a Go file under
// examples/ that go test compiles and runs. The line before the block
// names the file, in a comment that GitHub does not show:
//
//	<!-- example: examples/quickstart/main.go -->
//	```go
//	package main
//	...
//	```
//
// and the block must appear in that file verbatim, up to whitespace (runs
// of spaces, tabs and newlines compare equal, so an excerpt from inside a
// function may be indented differently). The file's package must have a
// test file: the program runs in it (see examples/internal/exampletest),
// or its functions do. To change a README block, change the example file
// and its test first, then copy the code into the README.
//
// The examples of the nested module otel/ (which the root module must not
// import) are files under otel/, whose tests run with that module's own
// (cd otel && go test ./..., as .ci/run does).

// exampleMarker is the comment that names a block's example file.
var exampleMarker = regexp.MustCompile(`^<!-- example: (\S+) -->$`)

// goBlock is a ```go block of a Markdown file.
type goBlock struct {
	line    int    // of the opening fence, from 1
	example string // path in the marker before it, "" without one
	code    string
}

// firstLine is the block's first non-blank line, to name it in errors.
func (b goBlock) firstLine() string {
	for _, l := range strings.Split(b.code, "\n") {
		if strings.TrimSpace(l) != "" {
			return strings.TrimSpace(l)
		}
	}
	return "(empty)"
}

// goBlocks returns the ```go blocks of a Markdown text, and problems with
// its markers (a marker must be followed by a ```go block) and fences.
func goBlocks(md string) (blocks []goBlock, problems []string) {
	lines := strings.Split(md, "\n")
	for i := 0; i < len(lines); i++ {
		l := strings.TrimRight(lines[i], " \t\r")
		if m := exampleMarker.FindStringSubmatch(l); m != nil {
			if i+1 >= len(lines) || strings.TrimSpace(lines[i+1]) != "```go" {
				problems = append(problems, fmt.Sprintf("README.md:%d: %s is not followed by a ```go block on the next line", i+1, l))
			}
			continue
		}
		if !strings.HasPrefix(l, "```") {
			continue
		}
		lang := strings.TrimSpace(strings.TrimPrefix(l, "```"))
		start := i
		var code []string
		for i++; i < len(lines) && strings.TrimRight(lines[i], " \t\r") != "```"; i++ {
			code = append(code, lines[i])
		}
		if i == len(lines) {
			problems = append(problems, fmt.Sprintf("README.md:%d: the ``` block opened here is never closed", start+1))
		}
		if lang != "go" {
			continue
		}
		b := goBlock{line: start + 1, code: strings.Join(code, "\n")}
		if start > 0 {
			if m := exampleMarker.FindStringSubmatch(strings.TrimSpace(lines[start-1])); m != nil {
				b.example = m[1]
			}
		}
		blocks = append(blocks, b)
	}
	return blocks, problems
}

// normalize makes every run of whitespace one space.
func normalize(s string) string { return strings.Join(strings.Fields(s), " ") }

// checkBlock says what is wrong with b, given the file its marker names
// (read from the repository root), or "" when nothing is.
func checkBlock(b goBlock, readFile func(path string) ([]byte, error), hasTest func(dir string) bool) string {
	where := fmt.Sprintf("README.md:%d: the Go block starting %q", b.line, b.firstLine())
	if b.example == "" {
		return where + " names no example file: put <!-- example: examples/DIR/FILE.go --> on the line before its ```go, and the code in that file"
	}
	p := filepath.ToSlash(filepath.Clean(b.example))
	if !(strings.HasPrefix(p, "examples/") || strings.HasPrefix(p, "otel/")) || !strings.HasSuffix(p, ".go") {
		return fmt.Sprintf("%s names %s: want a .go file under examples/ (or otel/)", where, b.example)
	}
	src, err := readFile(p)
	if err != nil {
		return fmt.Sprintf("%s names %s, which cannot be read: %v", where, p, err)
	}
	if !strings.Contains(normalize(string(src)), normalize(b.code)) {
		msg := fmt.Sprintf("%s has drifted from %s: the block is not in it verbatim (whitespace aside)", where, p)
		for _, l := range strings.Split(b.code, "\n") {
			if n := normalize(l); n != "" && !strings.Contains(normalize(string(src)), n) {
				return msg + fmt.Sprintf("; its line %q is not in the file", strings.TrimSpace(l))
			}
		}
		return msg + "; every line is in the file, but not in this order: copy the code from the file again"
	}
	if !hasTest(filepath.Dir(p)) {
		return fmt.Sprintf("%s is in %s, whose package has no test file to compile and run it", where, p)
	}
	return ""
}

func TestREADMEGoBlocksAreTestedExamples(t *testing.T) {
	md, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks, problems := goBlocks(string(md))
	for _, p := range problems {
		t.Error(p)
	}
	if len(blocks) < 5 {
		t.Fatalf("README.md has %d ```go blocks: is the fence syntax still ```go?", len(blocks))
	}
	readFile := func(p string) ([]byte, error) { return os.ReadFile(filepath.Join("..", filepath.FromSlash(p))) }
	hasTest := func(dir string) bool {
		m, _ := filepath.Glob(filepath.Join("..", dir, "*_test.go"))
		return len(m) > 0
	}
	for _, b := range blocks {
		if msg := checkBlock(b, readFile, hasTest); msg != "" {
			t.Error(msg)
		}
	}
}

// TestREADMECheckFailsClearly: a drifted or unmarked block fails, naming
// the block's first line and what is missing.
func TestREADMECheckFailsClearly(t *testing.T) {
	files := map[string]string{
		"examples/x/x.go": "package x\n\nfunc F() int {\n\treturn 1\n}\n",
		"otel/x/x.go":     "package x\n\nfunc O() {}\n",
		"cmd/x/x.go":      "package x\n\nfunc C() {}\n",
	}
	readFile := func(p string) ([]byte, error) {
		if s, ok := files[p]; ok {
			return []byte(s), nil
		}
		return nil, os.ErrNotExist
	}
	hasTest := func(dir string) bool { return dir == "examples/x" || dir == "otel/x" || dir == "cmd/x" }
	md := "# t\n\n<!-- example: examples/x/x.go -->\n```go\nfunc F() int {\n    return 1\n}\n```\n\n" + // matches, other indentation
		"<!-- example: examples/x/x.go -->\n```go\nfunc F() int {\n\treturn 2\n}\n```\n\n" + // drifted
		"```go\nfunc G() {}\n```\n\n" + // no marker
		"<!-- example: examples/y/y.go -->\n```go\nfunc H() {}\n```\n\n" + // no such file
		"<!-- example: examples/x/x.go -->\n\n```sh\nls\n```\n" + // marker not before a go block
		"<!-- example: otel/x/x.go -->\n```go\nfunc O() {}\n```\n" + // the nested module's
		"<!-- example: cmd/x/x.go -->\n```go\nfunc C() {}\n```\n" // not an example
	blocks, problems := goBlocks(md)
	if len(blocks) != 6 {
		t.Fatalf("%d blocks: %+v", len(blocks), blocks)
	}
	var got []string
	for _, b := range blocks {
		got = append(got, checkBlock(b, readFile, hasTest))
	}
	want := []string{
		"",
		`README.md:11: the Go block starting "func F() int {" has drifted from examples/x/x.go: the block is not in it verbatim (whitespace aside); its line "return 2" is not in the file`,
		`README.md:17: the Go block starting "func G() {}" names no example file`,
		`README.md:22: the Go block starting "func H() {}" names examples/y/y.go, which cannot be read`,
		"",
		`README.md:36: the Go block starting "func C() {}" names cmd/x/x.go: want a .go file under examples/ (or otel/)`,
	}
	for i := range want {
		if want[i] == "" && got[i] != "" || !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("block %d:\n got %s\nwant %s...", i, got[i], want[i])
		}
	}
	if len(problems) != 1 || !strings.HasPrefix(problems[0], "README.md:26: <!-- example: examples/x/x.go --> is not followed by a ```go block") {
		t.Errorf("problems: %q", problems)
	}
}

// TestREADMENewcomerCommands: the two commands at the top of the README
// are the demo and the tests, and the demo's own test (which runs it)
// exists.
func TestREADMENewcomerCommands(t *testing.T) {
	md, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(md), "```sh\n")
	block, _, _ := strings.Cut(rest, "```")
	var cmds []string
	for _, l := range strings.Split(block, "\n") {
		if c, _, _ := strings.Cut(l, "#"); strings.TrimSpace(c) != "" {
			cmds = append(cmds, strings.TrimSpace(c))
		}
	}
	if want := []string{"go run ./cmd/worker demo", "go test -race -count=1 ./..."}; !ok || strings.Join(cmds, "\n") != strings.Join(want, "\n") {
		t.Errorf("README's first sh block runs %q, want %q", cmds, want)
	}
	src, err := os.ReadFile("../cmd/worker/demo_test.go")
	if err != nil || !strings.Contains(string(src), "demo(") {
		t.Errorf("cmd/worker/demo_test.go should run the demo: %v", err)
	}
}
