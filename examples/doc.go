// Package examples holds no code: its subdirectories are example programs
// and packages, and its test checks that every Go block of the repository's
// README.md is a verbatim excerpt of one of them, so that the README's code
// compiles and runs in the tests (see readme_test.go).
package examples
