// Package dashboard is gotasks' web dashboard: queues with their counts and
// a live throughput chart, failed tasks with their tracebacks, a page per
// task, and retry and cancel buttons that ask before acting. It is
// server-rendered HTML with one small script, all embedded: it loads
// nothing from outside the machine. The queue and task pages follow the
// task events (see Subscriber, and broker.Subscribe) and update in place
// when their tasks change.
//
// The worker command serves it with --dashboard-addr (see ListenAddr for
// the loopback default); any program can mount New's handler itself.
//
// Security: it can retry and cancel tasks, so anyone who can reach it can
// change the queues. By default it listens on the loopback interface only.
// With Options.Token set, every request needs the token, as an
// "Authorization: Bearer" header or through the login form (which sets a
// cookie). State changes are POSTs that must come from the dashboard's
// own pages (a per-process form token, and the browser's Origin and
// Sec-Fetch-Site headers); Options.Hosts refuses requests addressed to
// other host names (DNS rebinding).
package dashboard

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/serializer"
	"github.com/gotasks/gotasks/task"
)

// Store is what the dashboard reads and changes; *broker.Redis is one.
type Store interface {
	QueueStats(ctx context.Context) ([]broker.QueueStat, error)
	ListTasks(ctx context.Context, queue string, state broker.State, offset, limit int) ([]*task.RawResult, error)
	GetResult(ctx context.Context, id string) (*task.RawResult, error)
	RetryFailed(ctx context.Context, id string) error
	Cancel(ctx context.Context, id string) (*task.RawResult, error)
}

// Pauser is a Store whose queues can be paused and resumed
// (*broker.Redis is one); the queue page then has a Pause or Resume
// button.
type Pauser interface {
	Pause(ctx context.Context, queue string) (since time.Time, changed bool, err error)
	Resume(ctx context.Context, queue string) (bool, error)
}

// DeadLetters is a Store that can retry and delete a queue's FAILED tasks
// in bulk (*broker.Redis is one); the failed tab then has Retry all and
// Delete all buttons.
type DeadLetters interface {
	RetryFailedWhere(ctx context.Context, queue string, f broker.FailedFilter) (int, error)
	DeleteFailedWhere(ctx context.Context, queue string, f broker.FailedFilter) (int, error)
}

// Options configure the dashboard. The zero value serves it without a
// token to whoever can connect.
type Options struct {
	// Token, if not empty, is required on every request: as
	// "Authorization: Bearer <token>", or entered once in the login form.
	Token string
	// Hosts, if not empty, are the only host names (without port) that
	// requests may be addressed to, e.g. localhost and 127.0.0.1 for a
	// dashboard on the loopback interface: a web page elsewhere cannot
	// then reach it by pointing its own domain name at 127.0.0.1.
	Hosts []string
	// Refresh is how often the overview's chart and counts update
	// (default 2s).
	Refresh time.Duration
	// Timeout bounds each request's Redis work (default 10s).
	Timeout time.Duration
	// Logger gets failed requests (default slog.Default()).
	Logger *slog.Logger
}

// PageSize is how many tasks a queue page lists.
const PageSize = 50

// recentFailures is how many failed tasks the overview shows.
const recentFailures = 20

// cookieName holds a login: an HMAC of the token, never the token itself.
const cookieName = "gotasks_dashboard"

//go:embed templates/*.html static/*
var files embed.FS

type handler struct {
	store Store
	opts  Options
	log   *slog.Logger
	mux   *http.ServeMux
	pages map[string]*template.Template
	// formToken is put in every form and required on every POST: a page
	// on another site cannot read it, so cannot forge a POST.
	formToken string

	// stops are closed when their server shuts down, to end the event
	// streams (see shuttingDown).
	smu   sync.Mutex
	stops map[*http.Server]chan struct{}
}

// New returns the dashboard's handler, serving at the root path (mount it
// under a prefix with http.StripPrefix).
func New(s Store, opts Options) http.Handler {
	opts.Refresh = cmp.Or(opts.Refresh, 2*time.Second)
	opts.Timeout = cmp.Or(opts.Timeout, 10*time.Second)
	h := &handler{store: s, opts: opts, log: cmp.Or(opts.Logger, slog.Default()), mux: http.NewServeMux()}
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	h.formToken = hex.EncodeToString(b[:])
	h.pages = make(map[string]*template.Template)
	for _, p := range []string{"overview", "queue", "task", "confirm", "login", "error"} {
		h.pages[p] = template.Must(template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/"+p+".html"))
	}
	static, _ := fs.Sub(files, "static")
	// {file}: the named files only, never a listing of the directory.
	h.mux.Handle("GET /static/{file}", http.StripPrefix("/static/", http.FileServerFS(static)))
	h.mux.HandleFunc("GET /{$}", h.overview)
	h.mux.HandleFunc("GET /queues/{queue}", h.queue)
	h.mux.HandleFunc("GET /tasks", h.find)
	h.mux.HandleFunc("GET /tasks/{id}", h.task)
	h.mux.HandleFunc("POST /tasks/{id}/retry", func(w http.ResponseWriter, r *http.Request) { h.act(w, r, "retry") })
	h.mux.HandleFunc("POST /tasks/{id}/cancel", func(w http.ResponseWriter, r *http.Request) { h.act(w, r, "cancel") })
	h.mux.HandleFunc("POST /queues/{queue}/pause", func(w http.ResponseWriter, r *http.Request) { h.pause(w, r, "pause") })
	h.mux.HandleFunc("POST /queues/{queue}/resume", func(w http.ResponseWriter, r *http.Request) { h.pause(w, r, "resume") })
	h.mux.HandleFunc("POST /queues/{queue}/retry-failed", func(w http.ResponseWriter, r *http.Request) { h.pause(w, r, "retry-failed") })
	h.mux.HandleFunc("POST /queues/{queue}/delete-failed", func(w http.ResponseWriter, r *http.Request) { h.pause(w, r, "delete-failed") })
	h.mux.HandleFunc("GET /api/stats", h.stats)
	h.mux.HandleFunc("GET /api/events", h.events)
	h.mux.HandleFunc("GET /login", h.loginPage)
	h.mux.HandleFunc("POST /login", h.login)
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("Cache-Control", "no-store")
	if len(h.opts.Hosts) > 0 && !slices.Contains(h.opts.Hosts, hostOnly(r.Host)) {
		http.Error(w, fmt.Sprintf("this dashboard does not answer for host %q", r.Host), http.StatusMisdirectedRequest)
		return
	}
	if r.Method == http.MethodPost && !sameOrigin(r) {
		http.Error(w, "cross-site request refused", http.StatusForbidden)
		return
	}
	public := r.URL.Path == "/login" || strings.HasPrefix(r.URL.Path, "/static/")
	if h.opts.Token != "" && !public && !h.authorized(r) {
		if strings.HasPrefix(r.URL.Path, "/api/") || r.Header.Get("Authorization") != "" || r.Method != http.MethodGet {
			hd.Set("WWW-Authenticate", `Bearer realm="gotasks"`)
			http.Error(w, "a valid token is required", http.StatusUnauthorized)
			return
		}
		http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// hostOnly is the host name of a Host header, without port or brackets.
func hostOnly(hostport string) string {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		h = strings.Trim(hostport, "[]")
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// sameOrigin reports whether a POST comes from a page of this site, by the
// headers browsers set on their own (a non-browser client sends neither).
func sameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	return true
}

// authorized reports whether r carries the token (Bearer) or a login
// cookie that has not expired.
func (h *handler) authorized(r *http.Request) bool {
	if h.bearer(r) {
		return true
	}
	c, err := r.Cookie(cookieName)
	if err != nil {
		return false
	}
	issued, mac, ok := strings.Cut(c.Value, ".")
	sec, err := strconv.ParseInt(issued, 10, 64)
	if !ok || err != nil || time.Since(time.Unix(sec, 0)) > sessionLifetime || time.Unix(sec, 0).After(time.Now().Add(time.Minute)) {
		return false
	}
	return equal(mac, h.sessionMAC(issued))
}

// bearer reports whether r has a valid "Authorization: Bearer" header,
// which a page on another site cannot make a browser send.
func (h *handler) bearer(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && h.opts.Token != "" && equal(tok, h.opts.Token)
}

// equal compares secrets in constant time, lengths included.
func equal(a, b string) bool {
	x, y := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(x[:], y[:]) == 1
}

// sessionLifetime is how long a login lasts.
const sessionLifetime = 7 * 24 * time.Hour

// sessionMAC signs a login's issue time with the token: the cookie proves
// the token was entered, without storing it in the browser, and changing
// the token ends every login.
func (h *handler) sessionMAC(issued string) string {
	m := hmac.New(sha256.New, []byte(h.opts.Token))
	m.Write([]byte("gotasks dashboard session " + issued))
	return hex.EncodeToString(m.Sum(nil))
}

func (h *handler) loginPage(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, http.StatusOK, "login", loginView{Next: safeNext(r.URL.Query().Get("next"))})
}

func (h *handler) login(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.FormValue("next"))
	if !h.validForm(r) {
		h.fail(w, r, http.StatusForbidden, "the form has expired: reload the page and try again")
		return
	}
	if h.opts.Token == "" {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	if !equal(r.FormValue("token"), h.opts.Token) {
		h.log.Warn("dashboard: wrong token at login", "remote", r.RemoteAddr)
		h.render(w, r, http.StatusUnauthorized, "login", loginView{Next: next, Wrong: true})
		return
	}
	issued := strconv.FormatInt(time.Now().Unix(), 10)
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: issued + "." + h.sessionMAC(issued), Path: "/",
		MaxAge: int(sessionLifetime.Seconds()), HttpOnly: true, SameSite: http.SameSiteStrictMode,
		// Behind a TLS-terminating proxy the request itself is plain HTTP.
		Secure: r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https",
	})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// safeNext keeps a post-login redirect on this site: a path of its own,
// nothing a browser could read as another host (//host, /\host, or with
// control characters that browsers drop, as in "/\t/host").
func safeNext(next string) string {
	for _, c := range next {
		if c < 0x20 || c == 0x7f || c == '\\' {
			return "/"
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") {
		return "/"
	}
	return next
}

// validForm reports whether a POST came from one of the dashboard's own
// forms, or from a script with the bearer token (which needs no form).
func (h *handler) validForm(r *http.Request) bool {
	return h.bearer(r) || equal(r.FormValue("form_token"), h.formToken)
}

// page is what every template gets; View is the page's own data.
type page struct {
	Title     string
	FormToken string
	Auth      bool
	View      any
}

type loginView struct {
	Next  string
	Wrong bool
}

func (h *handler) render(w http.ResponseWriter, r *http.Request, code int, name string, view any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	p := page{Title: name, FormToken: h.formToken, Auth: h.opts.Token != "", View: view}
	if err := h.pages[name].Execute(w, p); err != nil {
		h.log.Warn("dashboard: render page", "page", name, "path", r.URL.Path, "err", err)
	}
}

// fail shows an error page.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, code int, msg string) {
	h.render(w, r, code, "error", msg)
}

// unavailable reports that Redis could not do what (a 502): the details
// (addresses, the error) go to the log, not to whoever loads the page.
func (h *handler) unavailable(w http.ResponseWriter, r *http.Request, what string, err error) {
	h.log.Warn("dashboard: Redis failed", "path", r.URL.Path, "op", what, "err", err)
	h.fail(w, r, http.StatusBadGateway, "Could not "+what+": Redis did not answer as expected (the details are in the server's log).")
}

func (h *handler) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), h.opts.Timeout)
}

type overviewView struct {
	Queues   []broker.QueueStat
	Failed   []row
	Refresh  int64 // ms
	Now      time.Time
	Problems []string
}

func (h *handler) overview(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := h.ctx(r)
	defer cancel()
	stats, err := h.store.QueueStats(ctx)
	if err != nil {
		h.unavailable(w, r, "read the queues", err)
		return
	}
	v := overviewView{Queues: stats, Refresh: h.opts.Refresh.Milliseconds(), Now: time.Now()}
	var failed []*task.RawResult
	for _, s := range stats {
		if s.Failed == 0 {
			continue
		}
		rs, err := h.store.ListTasks(ctx, s.Queue, broker.StateFailed, 0, recentFailures)
		if err != nil {
			h.log.Warn("dashboard: list failed tasks", "queue", s.Queue, "err", err)
			v.Problems = append(v.Problems, fmt.Sprintf("Could not list the failed tasks of %s (the details are in the server's log).", s.Queue))
			continue
		}
		failed = append(failed, rs...)
	}
	slices.SortStableFunc(failed, func(a, b *task.RawResult) int { return b.FinishedAt.Compare(a.FinishedAt) })
	for _, f := range failed[:min(len(failed), recentFailures)] {
		v.Failed = append(v.Failed, newRow(f))
	}
	h.render(w, r, http.StatusOK, "overview", v)
}

// row is a task as a list shows it.
type row struct {
	*task.RawResult
	Error string // the final error, or the latest attempt's
	Trace string
}

func newRow(r *task.RawResult) row {
	out := row{RawResult: r}
	e := r.Err
	if e == nil && len(r.Errors) > 0 {
		e = r.Errors[len(r.Errors)-1]
	}
	if e != nil {
		out.Error, out.Trace = e.Error(), e.Traceback
	}
	return out
}

var states = []broker.State{broker.StatePending, broker.StateDeferred, broker.StateRunning, broker.StateFailed}

type queueView struct {
	Stat broker.QueueStat
	// CanPause: the store can pause and resume queues (Pauser).
	CanPause bool
	// CanBulk: the store can retry and delete FAILED tasks in bulk.
	CanBulk bool
	Done    string // what the last action did

	State        broker.State
	States       []broker.State
	Rows         []row
	Offset, Prev int
	Next         int // 0: no next page
}

func (h *handler) queue(w http.ResponseWriter, r *http.Request) {
	q := r.PathValue("queue")
	state := broker.State(cmp.Or(r.URL.Query().Get("state"), string(broker.StatePending)))
	if !slices.Contains(states, state) {
		h.fail(w, r, http.StatusBadRequest, fmt.Sprintf("unknown state %q: pending, deferred, running or failed", state))
		return
	}
	offset, err := strconv.Atoi(cmp.Or(r.URL.Query().Get("offset"), "0"))
	if err != nil || offset < 0 {
		h.fail(w, r, http.StatusBadRequest, "offset must be a number, 0 or more")
		return
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	stat, ok := h.queueStat(ctx, w, r, q)
	if !ok {
		return
	}
	// One more than a page tells whether there is a next page.
	rs, err := h.store.ListTasks(ctx, q, state, offset, PageSize+1)
	if err != nil {
		h.unavailable(w, r, "list the tasks", err)
		return
	}
	_, canPause := h.store.(Pauser)
	_, canBulk := h.store.(DeadLetters)
	v := queueView{Stat: stat, CanPause: canPause, CanBulk: canBulk, State: state, States: states, Offset: offset, Prev: max(offset-PageSize, 0)}
	switch done := r.URL.Query().Get("done"); {
	case strings.HasPrefix(done, "retried-"):
		v.Done = "Retried " + strings.TrimPrefix(done, "retried-") + " failed tasks: they wait to run again."
	case strings.HasPrefix(done, "deleted-"):
		v.Done = "Deleted " + strings.TrimPrefix(done, "deleted-") + " failed tasks."
	case done == "paused":
		v.Done = "Paused: workers claim none of this queue's tasks until it is resumed."
	case done == "resumed":
		v.Done = "Resumed: workers claim this queue's tasks again."
	}
	if len(rs) > PageSize {
		v.Next, rs = offset+PageSize, rs[:PageSize]
	}
	for _, t := range rs {
		v.Rows = append(v.Rows, newRow(t))
	}
	h.render(w, r, http.StatusOK, "queue", v)
}

// find is the overview's "go to task" box.
func (h *handler) find(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimSpace(r.URL.Query().Get("id"))
	if id == "" {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if !task.ValidID(id) {
		h.fail(w, r, http.StatusNotFound, fmt.Sprintf("%q is not a task id (26 letters and digits)", id))
		return
	}
	http.Redirect(w, r, "/tasks/"+url.PathEscape(id), http.StatusSeeOther)
}

type taskView struct {
	R          *task.RawResult
	Args       string
	ArgsErr    string
	Value      string
	ValueErr   string
	Done       string // what the last action did
	Problem    string // why the last action was refused
	Retryable  bool
	Cancelable bool
}

func (h *handler) task(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := h.ctx(r)
	defer cancel()
	h.showTask(ctx, w, r, http.StatusOK, r.URL.Query().Get("done"), "")
}

// result reads the task of the request's {id}; when it cannot, it has
// answered (404, or 502 for Redis) and returns nil.
func (h *handler) result(ctx context.Context, w http.ResponseWriter, r *http.Request) *task.RawResult {
	id := r.PathValue("id")
	res, err := h.store.GetResult(ctx, id)
	if errors.Is(err, task.ErrResultNotFound) {
		h.fail(w, r, http.StatusNotFound, fmt.Sprintf("no task %q (its result may have expired)", id))
		return nil
	}
	if err != nil {
		h.unavailable(w, r, "read the task", err)
		return nil
	}
	return res
}

func (h *handler) showTask(ctx context.Context, w http.ResponseWriter, r *http.Request, code int, done, problem string) {
	res := h.result(ctx, w, r)
	if res == nil {
		return
	}
	v := taskView{R: res, Problem: problem,
		Retryable:  res.Status == task.StatusFailed,
		Cancelable: res.Status == task.StatusNew || (res.Status == task.StatusRunning && !res.CancelRequested)}
	switch done {
	case "retried":
		v.Done = "Retried: the task is waiting to run again."
	case "cancelled":
		v.Done = "Cancelled: the task will not run."
		if res.Status == task.StatusRunning {
			v.Done = "Cancel asked for: its worker stops the task; it ends CANCELLED if it returns its context's error."
		}
	}
	v.Args, v.ArgsErr = display(res.Serializer, res.Args)
	if res.Status == task.StatusComplete {
		v.Value, v.ValueErr = display(res.Serializer, res.Value)
	}
	h.render(w, r, code, "task", v)
}

// display is a value indented as JSON, or why it cannot be shown.
func display(ser serializer.Serializer, data []byte) (string, string) {
	raw, err := serializer.DisplayJSON(ser, data)
	if err != nil {
		return "", err.Error()
	}
	if raw == nil {
		return "", ""
	}
	var out strings.Builder
	enc := json.NewEncoder(&out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(raw); err != nil {
		return string(raw), ""
	}
	return strings.TrimSpace(out.String()), ""
}

type confirmView struct {
	ID, Action, Label, TaskName string
	// Queue, for a queue's action (pause, resume) instead of a task's.
	Queue string
}

// queueStat reads the QueueStat of queue q; when it cannot (Redis
// failed, no such queue) it answers the request and returns false.
func (h *handler) queueStat(ctx context.Context, w http.ResponseWriter, r *http.Request, q string) (broker.QueueStat, bool) {
	stats, err := h.store.QueueStats(ctx)
	if err != nil {
		h.unavailable(w, r, "read the queues", err)
		return broker.QueueStat{}, false
	}
	i := slices.IndexFunc(stats, func(s broker.QueueStat) bool { return s.Queue == q })
	if i < 0 {
		h.fail(w, r, http.StatusNotFound, fmt.Sprintf("no queue %q", q))
		return broker.QueueStat{}, false
	}
	return stats[i], true
}

// pause pauses or resumes a queue, or retries or deletes its FAILED tasks,
// after a confirmation as act does.
func (h *handler) pause(w http.ResponseWriter, r *http.Request, action string) {
	q := r.PathValue("queue")
	p, canPause := h.store.(Pauser)
	dl, canBulk := h.store.(DeadLetters)
	if bulk := action == "retry-failed" || action == "delete-failed"; bulk && !canBulk || !bulk && !canPause {
		h.fail(w, r, http.StatusNotImplemented, "this dashboard's store cannot "+action+" queues")
		return
	}
	if !h.validForm(r) {
		h.fail(w, r, http.StatusForbidden, "the form has expired: reload the page and try again")
		return
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	if _, ok := h.queueStat(ctx, w, r, q); !ok {
		return
	}
	var err error
	if r.FormValue("confirmed") != "1" {
		label := map[string]string{"pause": "Pause", "resume": "Resume",
			"retry-failed": "Retry every failed task of", "delete-failed": "Delete every failed task of"}[action]
		h.render(w, r, http.StatusOK, "confirm", confirmView{Queue: q, Action: action, Label: label})
		return
	}
	var done string
	var n int
	switch action {
	case "pause":
		done = "paused"
		_, _, err = p.Pause(ctx, q)
	case "resume":
		done = "resumed"
		_, err = p.Resume(ctx, q)
	case "retry-failed":
		n, err = dl.RetryFailedWhere(ctx, q, broker.FailedFilter{})
		done = "retried-" + strconv.Itoa(n)
	case "delete-failed":
		n, err = dl.DeleteFailedWhere(ctx, q, broker.FailedFilter{})
		done = "deleted-" + strconv.Itoa(n)
	}
	if err != nil {
		h.unavailable(w, r, action+" the queue", err)
		return
	}
	h.log.Info("dashboard: queue "+action, "queue", q, "done", done, "remote", r.RemoteAddr)
	to := "/queues/" + url.PathEscape(q) + "?done=" + done
	if n > 0 || strings.HasSuffix(action, "-failed") {
		to += "&state=failed"
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// act retries or cancels a task. A POST without confirmed=1 (a browser
// without JavaScript, which asks with confirm() otherwise) gets a page
// that asks first.
func (h *handler) act(w http.ResponseWriter, r *http.Request, action string) {
	id := r.PathValue("id")
	if !h.validForm(r) {
		h.fail(w, r, http.StatusForbidden, "the form has expired: reload the page and try again")
		return
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	if r.FormValue("confirmed") != "1" {
		res := h.result(ctx, w, r)
		if res == nil {
			return
		}
		label := map[string]string{"retry": "Retry", "cancel": "Cancel"}[action]
		h.render(w, r, http.StatusOK, "confirm", confirmView{ID: id, Action: action, Label: label, TaskName: res.TaskName})
		return
	}
	var err error
	done := "retried"
	if action == "retry" {
		err = h.store.RetryFailed(ctx, id)
	} else {
		done = "cancelled"
		_, err = h.store.Cancel(ctx, id)
	}
	switch {
	case err == nil:
		h.log.Info("dashboard: task "+done, "id", id, "remote", r.RemoteAddr)
		http.Redirect(w, r, "/tasks/"+url.PathEscape(id)+"?done="+done, http.StatusSeeOther)
	case errors.Is(err, broker.ErrNotRetryable), errors.Is(err, task.ErrNotCancellable):
		h.showTask(ctx, w, r, http.StatusConflict, "", err.Error())
	case errors.Is(err, task.ErrResultNotFound):
		h.fail(w, r, http.StatusNotFound, err.Error())
	default:
		h.unavailable(w, r, action+" the task", err)
	}
}

// statsJSON is /api/stats: the live chart takes rates from the totals.
type statsJSON struct {
	Time   time.Time          `json:"time"`
	TimeMS int64              `json:"time_ms"` // the same, for JavaScript
	Queues []broker.QueueStat `json:"queues"`  // see QueueStat.MarshalJSON
}

func (h *handler) stats(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := h.ctx(r)
	defer cancel()
	stats, err := h.store.QueueStats(ctx)
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		h.log.Warn("dashboard: Redis failed", "path", r.URL.Path, "err", err)
		w.WriteHeader(http.StatusBadGateway)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "could not read the queues from Redis"})
		return
	}
	now := time.Now()
	_ = json.NewEncoder(w).Encode(statsJSON{Time: now, TimeMS: now.UnixMilli(), Queues: stats})
}

var funcs = template.FuncMap{
	"progress": ProgressLine,
	"stamp": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return short(time.Since(t)) + " ago"
	},
	"age": func(d time.Duration) string {
		if d <= 0 {
			return "–"
		}
		return short(d)
	},
	"pathq":    url.PathEscape,
	"btn":      func(token, id string) button { return button{token, id} },
	"attempts": AttemptsLine,
}

// button is what the retry and cancel forms need.
type button struct{ Token, ID string }

// short is a duration to the precision a person reads at a glance.
func short(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < 48*time.Hour:
		return d.Round(time.Second).String()
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

// ListenAddr is the address --dashboard-addr means: a port alone
// (":8080") listens on 127.0.0.1 only; any other host is taken as given.
// It also returns the host names to accept requests for (Options.Hosts):
// the loopback names for a loopback address, none (any) otherwise.
func ListenAddr(addr string) (string, []string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", nil, fmt.Errorf("dashboard address must be host:port or :port, not %q: %w", addr, err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		hosts := []string{"localhost", "127.0.0.1", "::1"}
		if h := hostOnly(host); !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
		return net.JoinHostPort(host, port), hosts, nil
	}
	return net.JoinHostPort(host, port), nil, nil
}
