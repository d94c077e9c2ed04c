package dashboard_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/dashboard"
	"github.com/gotasks/gotasks/serializer"
	"github.com/gotasks/gotasks/task"
)

// env is a dashboard over a broker on miniredis, served by httptest.
type env struct {
	t   *testing.T
	ctx context.Context
	b   *broker.Redis
	srv *httptest.Server
	c   *http.Client
}

func newEnv(t *testing.T, opts dashboard.Options) *env {
	t.Helper()
	m := miniredis.RunT(t)
	b, err := broker.OpenWith("redis://"+m.Addr()+"/0", broker.Options{}, broker.ConnOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	srv := httptest.NewServer(dashboard.New(b, opts))
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &env{t: t, ctx: context.Background(), b: b, srv: srv, c: c}
}

func (e *env) enqueue(name, queue string, args any) string {
	e.t.Helper()
	raw, err := serializer.Default.Marshal(args)
	if err != nil {
		e.t.Fatal(err)
	}
	msg := &task.Message{ID: task.NewID(), TaskName: name, Queue: queue, Backend: "default", Args: raw, EnqueuedAt: time.Now()}
	if err := e.b.Enqueue(e.ctx, msg); err != nil {
		e.t.Fatal(err)
	}
	return msg.ID
}

// fail enqueues a task and fails its only attempt with a traceback.
func (e *env) fail(queue, msg string) string {
	e.t.Helper()
	id := e.enqueue("dashtest.fail", queue, map[string]any{"n": 7})
	got, err := e.b.Claim(e.ctx, []string{queue}, 1, time.Minute, "w-1")
	if err != nil || len(got) != 1 {
		e.t.Fatalf("Claim = %v, %v", got, err)
	}
	r := got[0].Result
	r.Status, r.Err = task.StatusFailed, &task.Error{Type: "*errors.errorString", Message: msg, Traceback: "goroutine 7 [running]:\nmain.work()\n\t/src/work.go:42"}
	r.Errors = []*task.Error{r.Err}
	if err := e.b.Finish(e.ctx, r); err != nil {
		e.t.Fatal(err)
	}
	return id
}

// get fetches path and returns the status and body.
func (e *env) get(path string, header ...string) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return e.do(req)
}

func (e *env) do(req *http.Request) (int, string) {
	e.t.Helper()
	resp, err := e.c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if loc := resp.Header.Get("Location"); loc != "" {
		return resp.StatusCode, loc
	}
	return resp.StatusCode, string(body)
}

var formToken = regexp.MustCompile(`name="form_token" value="([0-9a-f]+)"`)

// post submits a form the way a page of the dashboard does: with the form
// token read from page, and a browser's same-origin headers.
func (e *env) post(page, path string, form url.Values) (int, string) {
	e.t.Helper()
	_, body := e.get(page)
	m := formToken.FindStringSubmatch(body)
	if m == nil {
		e.t.Fatalf("no form token on %s:\n%s", page, body)
	}
	form.Set("form_token", m[1])
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", e.srv.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return e.do(req)
}

func mustContain(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, body)
		}
	}
}

func TestOverviewAndQueuePages(t *testing.T) {
	e := newEnv(t, dashboard.Options{})
	e.enqueue("dashtest.ok", "emails", 1)
	e.enqueue("dashtest.ok", "emails", 2)
	failed := e.fail("reports", "the <disk> is full")

	code, body := e.get("/")
	if code != http.StatusOK {
		t.Fatalf("GET / = %d\n%s", code, body)
	}
	mustContain(t, "overview", body, `data-queue="emails"`, `data-queue="reports"`, `<canvas id="throughput"`,
		failed, "the &lt;disk&gt; is full", "main.work()", `/tasks/`+failed+`/retry`)
	if strings.Contains(body, "<disk>") {
		t.Error("an error message reached the page unescaped")
	}
	for _, ext := range []string{"http://", "https://", "//cdn"} {
		if strings.Contains(strings.ReplaceAll(body, e.srv.URL, ""), `src="`+ext) || strings.Contains(body, `href="`+ext) {
			t.Errorf("the page loads something from outside: %s", ext)
		}
	}

	code, body = e.get("/queues/emails")
	mustContain(t, "pending page", body, "dashtest.ok", "/cancel")
	if code != http.StatusOK || strings.Count(body, `<tr data-id=`) != 2 {
		t.Errorf("GET /queues/emails = %d with %d rows", code, strings.Count(body, `<tr data-id=`))
	}
	code, body = e.get("/queues/reports?state=failed")
	if code != http.StatusOK || !strings.Contains(body, failed) || !strings.Contains(body, "/src/work.go:42") {
		t.Errorf("failed page = %d\n%s", code, body)
	}
	if code, _ := e.get("/queues/nosuch"); code != http.StatusNotFound {
		t.Errorf("unknown queue = %d, want 404", code)
	}
	if code, _ := e.get("/queues/emails?state=weird"); code != http.StatusBadRequest {
		t.Errorf("unknown state = %d, want 400", code)
	}
	if code, _ := e.get("/static/app.js"); code != http.StatusOK {
		t.Errorf("app.js = %d", code)
	}
	if code, _ := e.get("/static/"); code != http.StatusNotFound {
		t.Errorf("a listing of /static/ = %d, want 404", code)
	}

	code, body = e.get("/api/stats")
	var stats struct {
		Queues []struct {
			Queue       string `json:"queue"`
			Pending     int64  `json:"pending"`
			Failed      int64  `json:"failed"`
			FailedTotal int64  `json:"failed_total"`
		}
	}
	if err := json.Unmarshal([]byte(body), &stats); code != http.StatusOK || err != nil || len(stats.Queues) != 2 {
		t.Fatalf("/api/stats = %d, %v\n%s", code, err, body)
	}
	if q := stats.Queues; q[0].Queue != "emails" || q[0].Pending != 2 || q[1].Failed != 1 || q[1].FailedTotal != 1 {
		t.Errorf("/api/stats queues = %+v", q)
	}
}

func TestTaskPageRetryAndCancel(t *testing.T) {
	e := newEnv(t, dashboard.Options{})
	failed := e.fail("q", "boom")
	pending := e.enqueue("dashtest.later", "q", map[string]any{"to": "ann@example.com"})

	code, body := e.get("/tasks/" + failed)
	if code != http.StatusOK {
		t.Fatalf("task page = %d\n%s", code, body)
	}
	mustContain(t, "failed task page", body, "FAILED", "boom", "main.work()", `&#34;n&#34;: 7`, "/retry")

	// Without confirmed=1 (no JavaScript) the server asks first and
	// changes nothing.
	code, body = e.post("/tasks/"+failed, "/tasks/"+failed+"/retry", url.Values{})
	if code != http.StatusOK || !strings.Contains(body, `name="confirmed" value="1"`) {
		t.Errorf("unconfirmed retry = %d\n%s", code, body)
	}
	if r, _ := e.b.GetResult(e.ctx, failed); r.Status != task.StatusFailed {
		t.Fatalf("an unconfirmed retry changed the task: %s", r.Status)
	}
	code, loc := e.post("/tasks/"+failed, "/tasks/"+failed+"/retry", url.Values{"confirmed": {"1"}})
	if code != http.StatusSeeOther || loc != "/tasks/"+failed+"?done=retried" {
		t.Fatalf("retry = %d %s", code, loc)
	}
	if r, _ := e.b.GetResult(e.ctx, failed); r.Status != task.StatusNew {
		t.Errorf("after retry: %s, want NEW", r.Status)
	}
	_, body = e.get(loc)
	mustContain(t, "page after retry", body, "Retried", "NEW")
	// Retrying it again is refused with the reason, not a server error.
	code, body = e.post("/tasks/"+failed, "/tasks/"+failed+"/retry", url.Values{"confirmed": {"1"}})
	if code != http.StatusConflict || !strings.Contains(body, "only a FAILED task can be retried") {
		t.Errorf("second retry = %d\n%s", code, body)
	}

	code, loc = e.post("/tasks/"+pending, "/tasks/"+pending+"/cancel", url.Values{"confirmed": {"1"}})
	if code != http.StatusSeeOther {
		t.Fatalf("cancel = %d %s", code, loc)
	}
	if r, _ := e.b.GetResult(e.ctx, pending); r.Status != task.StatusCancelled {
		t.Errorf("after cancel: %s", r.Status)
	}
	// (A cancelled task's page has no form: take the token from another.)
	code, body = e.post("/login", "/tasks/"+pending+"/cancel", url.Values{"confirmed": {"1"}})
	if code != http.StatusConflict || !strings.Contains(body, "CANCELLED") {
		t.Errorf("second cancel = %d\n%s", code, body)
	}

	if code, _ := e.get("/tasks/" + task.NewID()); code != http.StatusNotFound {
		t.Errorf("unknown task = %d, want 404", code)
	}
	if code, loc := e.get("/tasks?id=+" + failed + "+"); code != http.StatusSeeOther || loc != "/tasks/"+failed {
		t.Errorf("find = %d %s", code, loc)
	}
	if code, _ := e.get("/tasks?id=.."); code != http.StatusNotFound {
		t.Errorf("find .. = %d, want 404", code)
	}
}

// TestForgedPosts: a state change needs the form token of the dashboard's
// own pages, and a browser's cross-site POST is refused outright.
func TestForgedPosts(t *testing.T) {
	e := newEnv(t, dashboard.Options{})
	failed := e.fail("q", "boom")
	send := func(form url.Values, header ...string) int {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/tasks/"+failed+"/retry", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		code, _ := e.do(req)
		return code
	}
	_, page := e.get("/tasks/" + failed)
	tok := formToken.FindStringSubmatch(page)[1]
	if c := send(url.Values{"confirmed": {"1"}}); c != http.StatusForbidden {
		t.Errorf("no form token = %d, want 403", c)
	}
	for _, h := range [][]string{
		{"Origin", "https://evil.example"}, {"Origin", "null"},
		{"Sec-Fetch-Site", "cross-site"}, {"Sec-Fetch-Site", "same-site"},
	} {
		if c := send(url.Values{"confirmed": {"1"}, "form_token": {tok}}, h...); c != http.StatusForbidden {
			t.Errorf("%s: %s = %d, want 403", h[0], h[1], c)
		}
	}
	if r, _ := e.b.GetResult(e.ctx, failed); r.Status != task.StatusFailed {
		t.Errorf("a forged POST changed the task: %s", r.Status)
	}
}

func TestToken(t *testing.T) {
	e := newEnv(t, dashboard.Options{Token: "s3cret"})
	e.fail("q", "boom")
	if code, loc := e.get("/queues/q?state=failed"); code != http.StatusSeeOther || loc != "/login?next=%2Fqueues%2Fq%3Fstate%3Dfailed" {
		t.Errorf("page without token = %d %s, want a redirect to the login", code, loc)
	}
	if code, _ := e.get("/api/stats"); code != http.StatusUnauthorized {
		t.Errorf("API without token = %d, want 401", code)
	}
	if code, _ := e.get("/api/stats", "Authorization", "Bearer wrong"); code != http.StatusUnauthorized {
		t.Errorf("wrong bearer token = %d, want 401", code)
	}
	if code, _ := e.get("/api/stats", "Authorization", "Bearer s3cret"); code != http.StatusOK {
		t.Errorf("bearer token = %d, want 200", code)
	}
	code, body := e.post("/login", "/login", url.Values{"token": {"nope"}, "next": {"/queues/q"}})
	if code != http.StatusUnauthorized || !strings.Contains(body, "not the dashboard's token") {
		t.Errorf("wrong login = %d", code)
	}
	code, loc := e.post("/login", "/login", url.Values{"token": {"s3cret"}, "next": {"/queues/q"}})
	if code != http.StatusSeeOther || loc != "/queues/q" {
		t.Fatalf("login = %d %s", code, loc)
	}
	for _, c := range e.c.Jar.Cookies(mustURL(t, e.srv.URL)) {
		if strings.Contains(c.Value, "s3cret") {
			t.Errorf("the cookie holds the token: %s", c)
		}
	}
	if code, _ := e.get("/queues/q"); code != http.StatusOK {
		t.Errorf("page after login = %d", code)
	}
	// The login never sends anyone to another site, however the address
	// is written (browsers drop tabs and newlines: "/\t/evil" is //evil).
	for _, next := range []string{"//evil.example/x", "/\t/evil.example/x", "/\\evil.example", "https://evil.example/", "/\n/evil.example", "evil"} {
		if _, loc := e.post("/login", "/login", url.Values{"token": {"s3cret"}, "next": {next}}); loc != "/" {
			t.Errorf("login with next=%q redirected to %q, want /", next, loc)
		}
	}
	if _, body := e.get("/login?next=%2F%09%2Fevil.example"); !strings.Contains(body, `name="next" value="/"`) {
		t.Errorf("the login form carries a foreign next on:\n%s", body)
	}
}

// TestSession: the login cookie is HttpOnly, SameSite=Strict, expires,
// and holds a signature of its issue time: changing the time breaks it.
func TestSession(t *testing.T) {
	e := newEnv(t, dashboard.Options{Token: "s3cret"})
	failed := e.fail("q", "boom")
	_, page := e.get("/login")
	tok := formToken.FindStringSubmatch(page)[1]
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/login", strings.NewReader(url.Values{"token": {"s3cret"}, "form_token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cs := resp.Cookies()
	if len(cs) != 1 || !cs[0].HttpOnly || cs[0].SameSite != http.SameSiteStrictMode || cs[0].MaxAge <= 0 || cs[0].Secure {
		t.Fatalf("cookies %+v; want one HttpOnly, SameSite=Strict cookie with a Max-Age (not Secure over plain HTTP)", cs)
	}
	withCookie := func(v string) int {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/api/stats", nil)
		req.AddCookie(&http.Cookie{Name: cs[0].Name, Value: v})
		code, _ := e.do(req)
		return code
	}
	if c := withCookie(cs[0].Value); c != http.StatusOK {
		t.Errorf("the login cookie = %d", c)
	}
	issued, mac, _ := strings.Cut(cs[0].Value, ".")
	n, _ := strconv.ParseInt(issued, 10, 64)
	if c := withCookie(strconv.FormatInt(n+1, 10) + "." + mac); c != http.StatusUnauthorized {
		t.Errorf("a cookie with its time changed = %d, want 401", c)
	}

	// Behind a TLS proxy the cookie is Secure.
	req, _ = http.NewRequest(http.MethodPost, e.srv.URL+"/login", strings.NewReader(url.Values{"token": {"s3cret"}, "form_token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Forwarded-Proto", "https")
	resp, err = http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cs := resp.Cookies(); len(cs) != 1 || !cs[0].Secure {
		t.Errorf("behind https: %+v, want Secure", cs)
	}

	// A POST needs the login (or the token) too; a script with the bearer
	// token needs no form token.
	post := func(header ...string) int {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/tasks/"+failed+"/retry", strings.NewReader("confirmed=1"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := post(); c != http.StatusUnauthorized {
		t.Errorf("POST without the token = %d, want 401", c)
	}
	if r, _ := e.b.GetResult(e.ctx, failed); r.Status != task.StatusFailed {
		t.Fatalf("an unauthorised POST retried the task")
	}
	if c := post("Authorization", "Bearer s3cret"); c != http.StatusSeeOther {
		t.Errorf("POST with the bearer token = %d, want 303", c)
	}
	if r, _ := e.b.GetResult(e.ctx, failed); r.Status != task.StatusNew {
		t.Errorf("after a bearer retry: %s", r.Status)
	}
}

// TestOddQueueNames: names with spaces, slashes, '?', '#' and non-ASCII
// letters link to their own page.
func TestOddQueueNames(t *testing.T) {
	e := newEnv(t, dashboard.Options{})
	const q = "a b/c?d#é"
	id := e.enqueue("dashtest.odd", q, 1)
	_, body := e.get("/")
	link := "/queues/" + url.PathEscape(q)
	if !strings.Contains(body, `href="`+link+`"`) {
		t.Fatalf("no link %s on the overview:\n%s", link, body)
	}
	code, body := e.get(link + "?state=pending")
	if code != http.StatusOK || !strings.Contains(body, id) {
		t.Errorf("GET %s = %d\n%s", link, code, body)
	}
}

// TestPages: a queue page shows 50 tasks and links to the next page only
// when there is one.
func TestPages(t *testing.T) {
	e := newEnv(t, dashboard.Options{})
	for i := range dashboard.PageSize {
		e.enqueue("dashtest.page", "q", i)
	}
	_, body := e.get("/queues/q")
	if n := strings.Count(body, "<tr data-id="); n != dashboard.PageSize || strings.Contains(body, "more →") {
		t.Errorf("exactly one page: %d rows, more link %v", n, strings.Contains(body, "more →"))
	}
	e.enqueue("dashtest.page", "q", 99)
	_, body = e.get("/queues/q")
	if n := strings.Count(body, "<tr data-id="); n != dashboard.PageSize || !strings.Contains(body, "offset=50") {
		t.Errorf("first of two pages: %d rows, next link %v", n, strings.Contains(body, "offset=50"))
	}
	_, body = e.get("/queues/q?offset=50")
	if n := strings.Count(body, "<tr data-id="); n != 1 || strings.Contains(body, "more →") || !strings.Contains(body, "offset=0") {
		t.Errorf("second page: %d rows\n%s", n, body)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestHosts: a dashboard on loopback does not answer requests addressed to
// another name (a rebinding domain pointed at 127.0.0.1).
func TestHosts(t *testing.T) {
	addr, hosts, err := dashboard.ListenAddr(":0")
	if err != nil || addr != "127.0.0.1:0" || len(hosts) == 0 {
		t.Fatalf("ListenAddr(:0) = %s %v %v", addr, hosts, err)
	}
	if addr, hosts, _ := dashboard.ListenAddr("0.0.0.0:8080"); addr != "0.0.0.0:8080" || hosts != nil {
		t.Errorf("ListenAddr(0.0.0.0:8080) = %s %v: an address given is taken as given", addr, hosts)
	}
	if _, _, err := dashboard.ListenAddr("8080"); err == nil {
		t.Error("ListenAddr(8080) accepted a port without colon")
	}
	if _, hosts, _ := dashboard.ListenAddr("127.0.0.2:8080"); !slices.Contains(hosts, "127.0.0.2") {
		t.Errorf("ListenAddr(127.0.0.2:8080) hosts %v lack the address itself", hosts)
	}
	e := newEnv(t, dashboard.Options{Hosts: hosts})
	if code, _ := e.get("/"); code != http.StatusOK {
		t.Errorf("127.0.0.1 = %d", code)
	}
	for host, want := range map[string]int{
		"rebind.example:80": http.StatusMisdirectedRequest, "rebind.example": http.StatusMisdirectedRequest,
		"localhost:8080": http.StatusOK, "LOCALHOST:8080": http.StatusOK, "localhost.": http.StatusOK,
		"[::1]:8080": http.StatusOK, "[::1]": http.StatusOK,
	} {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/", nil)
		req.Host = host
		if code, _ := e.do(req); code != want {
			t.Errorf("Host %s = %d, want %d", host, code, want)
		}
	}
}

// TestRedisDown: pages say Redis cannot be read instead of failing
// blank or hanging.
func TestRedisDown(t *testing.T) {
	m := miniredis.RunT(t)
	b, err := broker.OpenWith("redis://"+m.Addr()+"/0", broker.Options{}, broker.ConnOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	addr := m.Addr()
	m.Close()
	srv := httptest.NewServer(dashboard.New(b, dashboard.Options{Timeout: 2 * time.Second}))
	defer srv.Close()
	for _, path := range []string{"/", "/api/stats", "/queues/q", "/tasks/" + task.NewID()} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// Said plainly, without the error's details (addresses) that only
		// the log gets.
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "Redis") || strings.Contains(string(body), addr) {
			t.Errorf("%s with Redis down = %d\n%s", path, resp.StatusCode, body)
		}
	}
}
