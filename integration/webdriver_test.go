package integration

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// A WebDriver client of just what the dashboard test needs, over
// chromedriver's HTTP API (W3C WebDriver): Debian's chromium-driver is the
// driver the CI installs, and no maintained Go client of the protocol is
// small enough to be worth a dependency for a dozen calls.

const (
	chromiumBin     = "/usr/bin/chromium"
	chromedriverBin = "/usr/bin/chromedriver"
	// elementKey is the W3C name of an element reference in JSON.
	elementKey = "element-6066-11e4-a52e-4f735466cecf"
)

// browser is one headless Chromium session.
type browser struct {
	t    *testing.T
	base string // chromedriver's URL
	sid  string
	hc   *http.Client
}

// requireBrowser skips without chromium and chromedriver, and fails in CI
// (which installs them: .ci/run).
func requireBrowser(t *testing.T) {
	t.Helper()
	for _, bin := range []string{chromiumBin, chromedriverBin} {
		if _, err := os.Stat(bin); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is missing (apt-get install chromium chromium-driver): %v", bin, err)
			}
			t.Skipf("%s is missing (apt-get install chromium chromium-driver)", bin)
		}
	}
}

// startBrowser starts chromedriver on a free port and opens a session in a
// fresh profile; both end at cleanup.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	requireBrowser(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	logPath := filepath.Join(t.TempDir(), "chromedriver.log")
	cmd := exec.Command(chromedriverBin, "--port="+strconv.Itoa(port), "--log-path="+logPath)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromedriver: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("chromedriver log (tail):\n%s", tail(b, 4000))
		}
	})
	br := &browser{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", port), hc: &http.Client{Timeout: 60 * time.Second}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var st struct {
			Ready bool `json:"ready"`
		}
		if err := br.call(http.MethodGet, "/status", nil, &st); err == nil && st.Ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("chromedriver did not become ready in 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The flags the machine's notes give for headless Chromium here: no
	// sandbox as root, and none of the background connections that a
	// closed network refuses.
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--window-size=1280,1000", "--user-data-dir=" + t.TempDir()}
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		// The test answers confirm() itself.
		"unhandledPromptBehavior": "ignore",
		"goog:chromeOptions":      map[string]any{"binary": chromiumBin, "args": args},
	}}}
	var sess struct {
		SessionID string `json:"sessionId"`
	}
	if err := br.call(http.MethodPost, "/session", caps, &sess); err != nil {
		t.Fatalf("new browser session: %v", err)
	}
	br.sid = sess.SessionID
	t.Cleanup(func() { _ = br.call(http.MethodDelete, "/session/"+br.sid, nil, nil) })
	return br
}

// call sends one WebDriver command and decodes its "value" into out.
func (b *browser) call(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read reply: %w", method, path, err)
	}
	var reply struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(data, &reply); err != nil {
		return fmt.Errorf("%s %s: HTTP %d, not JSON: %.300s", method, path, resp.StatusCode, data)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error   string `json:"error"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(reply.Value, &e)
		return fmt.Errorf("%s %s: %s: %.500s", method, path, e.Error, e.Message)
	}
	if out != nil {
		return json.Unmarshal(reply.Value, out)
	}
	return nil
}

func (b *browser) must(err error) {
	b.t.Helper()
	if err != nil {
		b.t.Fatal(err)
	}
}

func (b *browser) session(path string) string { return "/session/" + b.sid + path }

// open navigates to url and waits for the page to load.
func (b *browser) open(url string) {
	b.t.Helper()
	b.must(b.call(http.MethodPost, b.session("/url"), map[string]string{"url": url}, nil))
}

// url is the address of the current page.
func (b *browser) url() string {
	b.t.Helper()
	var u string
	b.must(b.call(http.MethodGet, b.session("/url"), nil, &u))
	return u
}

// find returns the element matching a CSS selector, failing the test if
// there is none.
func (b *browser) find(css string) string {
	b.t.Helper()
	id, err := b.tryFind(css)
	b.must(err)
	return id
}

func (b *browser) tryFind(css string) (string, error) {
	var el map[string]string
	if err := b.call(http.MethodPost, b.session("/element"), map[string]string{"using": "css selector", "value": css}, &el); err != nil {
		return "", err
	}
	return el[elementKey], nil
}

func (b *browser) click(el string) {
	b.t.Helper()
	b.must(b.call(http.MethodPost, b.session("/element/"+el+"/click"), map[string]any{}, nil))
}

func (b *browser) typeInto(el, text string) {
	b.t.Helper()
	b.must(b.call(http.MethodPost, b.session("/element/"+el+"/value"), map[string]string{"text": text}, nil))
}

// text is an element's rendered text.
func (b *browser) text(css string) string {
	b.t.Helper()
	s, err := b.tryText(css)
	b.must(err)
	return s
}

// tryText is text for a page that may still be loading (in a retry loop):
// no such element yet is an error, not a failed test.
func (b *browser) tryText(css string) (string, error) {
	el, err := b.tryFind(css)
	if err != nil {
		return "", err
	}
	var s string
	err = b.call(http.MethodGet, b.session("/element/"+el+"/text"), nil, &s)
	return s, err
}

// source is the current page's HTML.
func (b *browser) source() string {
	b.t.Helper()
	var s string
	b.must(b.call(http.MethodGet, b.session("/source"), nil, &s))
	return s
}

// eval runs JavaScript in the page and decodes what it returns into out.
func (b *browser) eval(script string, out any) {
	b.t.Helper()
	b.must(b.call(http.MethodPost, b.session("/execute/sync"), map[string]any{"script": script, "args": []any{}}, out))
}

// alert returns the text of the open confirm() or alert(), waiting for it
// to open.
func (b *browser) alert() string {
	b.t.Helper()
	var s string
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err = b.call(http.MethodGet, b.session("/alert/text"), nil, &s); err == nil {
			return s
		}
	}
	b.t.Fatalf("no dialog opened: %v", err)
	return ""
}

// answer accepts (OK) or dismisses (Cancel) the open dialog.
func (b *browser) answer(accept bool) {
	b.t.Helper()
	path := "/alert/dismiss"
	if accept {
		path = "/alert/accept"
	}
	b.must(b.call(http.MethodPost, b.session(path), map[string]any{}, nil))
}

// screenshot saves the visible page as a PNG and returns its path.
func (b *browser) screenshot(path string) string {
	b.t.Helper()
	var s string
	b.must(b.call(http.MethodGet, b.session("/screenshot"), nil, &s))
	png, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	return path
}
