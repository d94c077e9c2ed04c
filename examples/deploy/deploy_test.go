// Package deploy_test checks the deployment files at the repository root
// (Dockerfile, .dockerignore, docker-compose.yml) and in examples/kubernetes
// against the code, without Docker or Kubernetes: a renamed flag, a moved
// package, a probe on the wrong port or a grace period shorter than the
// shutdown timeout fails here instead of in someone's cluster.
package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/build"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.uber.org/goleak"
	"gopkg.in/yaml.v3"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/cli"
	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// root is the repository root, relative to this package's directory.
const root = "../.."

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b
}

// splitWords splits a shell command line into words, honouring single and
// double quotes and backslashes, as sh would for the simple commands these
// files hold.
func splitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord, quote := false, rune(0)
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote == '\'':
			cur.WriteRune(r)
		case r == '\\' && i+1 < len(rs):
			i++
			cur.WriteRune(rs[i])
			inWord = true
		case quote == '"':
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote in %q", quote, s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int // where it starts, for messages
	cmd  string
	args string
}

func parseDockerfile(t *testing.T, src []byte) []instruction {
	t.Helper()
	var out []instruction
	var cur *instruction
	sc := bufio.NewScanner(bytes.NewReader(src))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cont := strings.HasSuffix(line, "\\")
		line = strings.TrimSuffix(line, "\\")
		if cur == nil {
			cmd, args, _ := strings.Cut(line, " ")
			cur = &instruction{line: n, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		} else {
			cur.args += " " + line
		}
		if !cont {
			out = append(out, *cur)
			cur = nil
		}
	}
	if cur != nil {
		t.Fatalf("Dockerfile:%d: continuation line at the end of the file", cur.line)
	}
	return out
}

// image is what the Dockerfile builds.
type image struct {
	builderTag string            // the golang image's tag
	cgoOff     bool              // CGO_ENABLED=0 for the builds
	built      map[string]string // build-stage output path → package path
	installed  map[string]string // runtime path → package path
	entrypoint []string
}

func checkDockerfile(t *testing.T) image {
	t.Helper()
	img := image{built: map[string]string{}, installed: map[string]string{}}
	stages := 0
	for _, in := range parseDockerfile(t, readFile(t, "Dockerfile")) {
		where := fmt.Sprintf("Dockerfile:%d", in.line)
		switch in.cmd {
		case "FROM":
			stages++
			if ref, ok := strings.CutPrefix(in.args, "golang:"); ok {
				img.builderTag, _, _ = strings.Cut(ref, " ")
			}
		case "ENV":
			if strings.Contains(in.args, "CGO_ENABLED=0") {
				img.cgoOff = true
			}
		case "RUN":
			if !strings.Contains(in.args, "go build") {
				continue
			}
			words, err := splitWords(in.args)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			out, pkgs := "", []string(nil)
			for i := 0; i < len(words); i++ {
				switch w := words[i]; {
				case w == "CGO_ENABLED=0":
					img.cgoOff = true
				case w == "-o" && i+1 < len(words):
					out = words[i+1]
					i++
				case strings.HasPrefix(w, "./"):
					pkgs = append(pkgs, w)
				}
			}
			if !slices.Contains(words, "-trimpath") {
				t.Errorf("%s: go build without -trimpath", where)
			}
			if out == "" || len(pkgs) != 1 {
				t.Fatalf("%s: want one go build of one ./package with -o, got output %q, packages %q", where, out, pkgs)
			}
			img.built[out] = pkgs[0]
		case "COPY":
			words, err := splitWords(in.args)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if len(words) < 3 || !strings.HasPrefix(words[0], "--from=") {
				continue // sources of the build stage
			}
			srcs, dest := words[1:len(words)-1], words[len(words)-1]
			for _, src := range srcs {
				pkg, ok := img.built[src]
				if !ok {
					t.Errorf("%s: copies %s, which no go build writes (built: %v)", where, src, img.built)
					continue
				}
				to := dest
				if strings.HasSuffix(dest, "/") {
					to = dest + path.Base(src)
				} else if len(srcs) > 1 {
					t.Errorf("%s: several sources need a destination directory ending in /", where)
				}
				img.installed[to] = pkg
			}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(in.args), &img.entrypoint); err != nil {
				t.Errorf("%s: ENTRYPOINT must be a JSON array (exec form, so that the worker gets SIGTERM as PID 1): %v", where, err)
			}
		}
	}
	if stages < 2 {
		t.Errorf("Dockerfile: %d stages, want a build stage and a runtime stage", stages)
	}
	if !img.cgoOff {
		t.Error("Dockerfile: CGO_ENABLED=0 is not set: the binaries would not be static")
	}
	if len(img.built) == 0 {
		t.Fatal("Dockerfile: no go build")
	}
	for out, pkg := range img.built {
		dir := filepath.Join(root, filepath.FromSlash(pkg))
		p, err := build.ImportDir(dir, 0)
		if err != nil {
			t.Errorf("Dockerfile builds %s from %s: %v", out, pkg, err)
		} else if p.Name != "main" {
			t.Errorf("Dockerfile builds %s from %s, which is package %s, not a command", out, pkg, p.Name)
		}
	}
	if len(img.entrypoint) == 0 {
		t.Fatal("Dockerfile: no ENTRYPOINT")
	}
	if pkg := img.installed[img.entrypoint[0]]; pkg != "./cmd/worker" {
		t.Errorf("Dockerfile: ENTRYPOINT %s is not the worker (./cmd/worker) binary; installed: %v", img.entrypoint[0], img.installed)
	}
	return img
}

// TestDockerfileGoVersion: the builder image must be able to build the
// module (go.mod's go line), or the build fails with a toolchain error.
func TestDockerfileGoVersion(t *testing.T) {
	img := checkDockerfile(t)
	goVersion := goModLine(t, "go")
	want := regexp.MustCompile(`^\d+\.\d+`).FindString(goVersion)
	tag := regexp.MustCompile(`^\d+\.\d+`).FindString(img.builderTag)
	if want == "" || tag != want {
		t.Errorf("Dockerfile builds with golang:%s, go.mod needs go %s: use golang:%s", img.builderTag, goVersion, want)
	}
}

// goModLine returns the argument of go.mod's directive (module, go).
func goModLine(t *testing.T, directive string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + directive + `\s+(\S+)\s*$`).FindSubmatch(readFile(t, "go.mod"))
	if m == nil {
		t.Fatalf("go.mod: no %s line", directive)
	}
	return string(m[1])
}

// dockerignored reports the .dockerignore pattern that leaves name (a
// slash-separated path in the context) out of the build context, if any.
func dockerignored(t *testing.T, patterns []string, name string) string {
	t.Helper()
	excluded := ""
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(strings.TrimPrefix(p, "!"), "/")
		if strings.Contains(p, "**") {
			t.Fatalf(".dockerignore: this test does not understand ** in %q; extend dockerignored", p)
		}
		// A pattern that matches a directory leaves out all of it.
		for n := name; n != "."; n = path.Dir(n) {
			if ok, err := path.Match(p, n); err != nil {
				t.Fatalf(".dockerignore: %q: %v", p, err)
			} else if ok {
				if neg {
					excluded = ""
				} else {
					excluded = p
				}
				break
			}
		}
	}
	return excluded
}

// modulePackages returns the directories (relative to root, slash
// separated) of pkg and of every package of this module it imports.
func modulePackages(t *testing.T, pkg string) []string {
	t.Helper()
	mod := goModLine(t, "module")
	seen := map[string]bool{}
	var visit func(dir string)
	visit = func(dir string) {
		if seen[dir] {
			return
		}
		seen[dir] = true
		p, err := build.ImportDir(filepath.Join(root, filepath.FromSlash(dir)), 0)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		for _, imp := range p.Imports {
			if rest, ok := strings.CutPrefix(imp, mod+"/"); ok {
				visit(rest)
			}
		}
	}
	visit(strings.TrimPrefix(pkg, "./"))
	return slices.Sorted(func(yield func(string) bool) {
		for d := range seen {
			if !yield(d) {
				return
			}
		}
	})
}

// TestDockerignoreKeepsSources: everything the Dockerfile's builds need is
// in the build context.
func TestDockerignoreKeepsSources(t *testing.T) {
	img := checkDockerfile(t)
	var patterns []string
	for line := range strings.Lines(string(readFile(t, ".dockerignore"))) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
		}
	}
	need := []string{"go.mod", "go.sum"}
	for _, pkg := range img.built {
		need = append(need, modulePackages(t, pkg)...)
	}
	for _, n := range need {
		if p := dockerignored(t, patterns, n); p != "" {
			t.Errorf(".dockerignore pattern %q leaves %s out of the build context, which the Dockerfile's builds need", p, n)
		}
	}
	if p := dockerignored(t, patterns, ".git"); p == "" {
		t.Error(".dockerignore does not leave out .git")
	}
}

// parseWorkerArgs parses args with the worker command's real flag parser.
func parseWorkerArgs(t *testing.T, where string, args []string) cli.Config {
	t.Helper()
	for _, v := range broker.EnvVars() {
		t.Setenv(v, "")
	}
	var out bytes.Buffer
	cfg, err := cli.ParseFlags("worker", args, &out)
	if err != nil {
		t.Fatalf("%s: the worker rejects its arguments %q: %v\n%s", where, args, err, out.String())
	}
	return cfg
}

// healthPort returns the port of cfg's --health-addr.
func healthPort(t *testing.T, where string, cfg cli.Config) int {
	t.Helper()
	if cfg.HealthAddr == "" {
		t.Fatalf("%s: no --health-addr", where)
	}
	_, p, err := net.SplitHostPort(cfg.HealthAddr)
	if err != nil {
		t.Fatalf("%s: --health-addr %q: %v", where, cfg.HealthAddr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port == 0 {
		t.Fatalf("%s: --health-addr %q needs a fixed port for the probes", where, cfg.HealthAddr)
	}
	return port
}

// composeFile is the part of docker-compose.yml checked here.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image         string            `yaml:"image"`
	Build         yaml.Node         `yaml:"build"`
	Entrypoint    yaml.Node         `yaml:"entrypoint"`
	Command       yaml.Node         `yaml:"command"`
	Environment   map[string]string `yaml:"environment"`
	DependsOn     yaml.Node         `yaml:"depends_on"`
	Healthcheck   map[string]any    `yaml:"healthcheck"`
	Volumes       []string          `yaml:"volumes"`
	ContainerName string            `yaml:"container_name"`
	Ports         []any             `yaml:"ports"`
	StopGrace     string            `yaml:"stop_grace_period"`
	Restart       string            `yaml:"restart"`
	Profiles      []string          `yaml:"profiles"`
}

// words returns a command or entrypoint given as a list or as a string.
func words(t *testing.T, where string, n yaml.Node) []string {
	t.Helper()
	switch n.Kind {
	case 0:
		return nil
	case yaml.ScalarNode:
		w, err := splitWords(n.Value)
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		return w
	case yaml.SequenceNode:
		var w []string
		if err := n.Decode(&w); err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		return w
	}
	t.Fatalf("%s: want a list or a string", where)
	return nil
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	var c composeFile
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, "docker-compose.yml")))
	dec.KnownFields(true) // a misspelt key is an error, not ignored
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for _, s := range []string{"redis", "worker", "producer"} {
		if _, ok := c.Services[s]; !ok {
			t.Fatalf("docker-compose.yml: no service %q", s)
		}
	}
	return c
}

// hostIsService checks that a Redis URL points at a compose service.
func hostIsService(t *testing.T, where, rawURL string, c composeFile) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if _, ok := c.Services[u.Hostname()]; !ok {
		t.Errorf("%s: Redis URL %s names host %q, which is no service", where, broker.RedactURL(rawURL), u.Hostname())
	}
}

func TestCompose(t *testing.T) {
	img := checkDockerfile(t)
	c := loadCompose(t)

	for name, s := range c.Services {
		if s.Build.Kind == 0 {
			continue
		}
		where := "docker-compose.yml: service " + name
		ctx, dockerfile := s.Build.Value, "Dockerfile"
		if s.Build.Kind == yaml.MappingNode {
			var b struct{ Context, Dockerfile string }
			if err := s.Build.Decode(&b); err != nil {
				t.Fatalf("%s: build: %v", where, err)
			}
			ctx = b.Context
			if b.Dockerfile != "" {
				dockerfile = b.Dockerfile
			}
		}
		if fi, err := os.Stat(filepath.Join(root, ctx, dockerfile)); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s: build context %q has no %s", where, ctx, dockerfile)
		}
	}

	redisSvc := c.Services["redis"]
	if len(redisSvc.Healthcheck) == 0 {
		t.Error("docker-compose.yml: redis has no healthcheck, which the workers' depends_on waits for")
	}
	if cmd := strings.Join(words(t, "redis command", redisSvc.Command), " "); !strings.Contains(cmd, "--appendonly yes") {
		t.Errorf("docker-compose.yml: redis runs %q without --appendonly yes: a restart would lose the queues", cmd)
	}
	if len(redisSvc.Volumes) == 0 {
		t.Error("docker-compose.yml: redis keeps its data in no volume")
	}

	w := c.Services["worker"]
	where := "docker-compose.yml: worker"
	entry := words(t, where+" entrypoint", w.Entrypoint)
	if entry == nil {
		entry = img.entrypoint
	}
	if len(entry) == 0 || img.installed[entry[0]] != "./cmd/worker" {
		t.Fatalf("%s: entrypoint %q is not the worker binary the Dockerfile installs (%v)", where, entry, img.installed)
	}
	cfg := parseWorkerArgs(t, where, append(slices.Clone(entry[1:]), words(t, where+" command", w.Command)...))
	healthPort(t, where, cfg)
	hostIsService(t, where, cfg.Broker.URL, c)
	grace, err := time.ParseDuration(w.StopGrace)
	if err != nil {
		t.Fatalf("%s: stop_grace_period %q: %v (compose's default of 10s would cut the shutdown short)", where, w.StopGrace, err)
	}
	if grace <= cfg.ShutdownTimeout {
		t.Errorf("%s: stop_grace_period %v is not longer than --shutdown-timeout %v: compose would SIGKILL draining workers", where, grace, cfg.ShutdownTimeout)
	}
	if w.ContainerName != "" || len(w.Ports) > 0 {
		t.Errorf("%s: container_name %q and ports %v prevent --scale worker=N", where, w.ContainerName, w.Ports)
	}
	var deps map[string]struct{ Condition string }
	if err := w.DependsOn.Decode(&deps); err != nil || deps["redis"].Condition != "service_healthy" {
		t.Errorf("%s: want depends_on redis with condition service_healthy (%v)", where, err)
	}

	p := c.Services["producer"]
	where = "docker-compose.yml: producer"
	pentry := words(t, where+" entrypoint", p.Entrypoint)
	if len(pentry) == 0 || img.installed[pentry[0]] != "./examples/producer" {
		t.Fatalf("%s: entrypoint %q is not the producer binary the Dockerfile installs (%v)", where, pentry, img.installed)
	}
	hostIsService(t, where, p.Environment["GOTASKS_REDIS_URL"], c)
	checkProducerArgs(t, where, append(slices.Clone(pentry[1:]), words(t, where+" command", p.Command)...))
}

// checkProducerArgs runs the producer (package main, so not importable)
// with the compose file's arguments against a Redis that is not there: it
// exits 2 for arguments it rejects, 1 when they parsed and Redis failed.
func checkProducerArgs(t *testing.T, where string, args []string) {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(build.Default.GOROOT, "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "producer")
	if out, err := exec.Command(goTool, "build", "-o", bin, "../producer").CombinedOutput(); err != nil {
		t.Fatalf("build the producer: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	// Later flags win: the compose file's Redis is replaced, not its other flags.
	cmd := exec.Command(bin, append(slices.Clone(args), "-redis-url", "redis://"+dead+"/0", "-timeout", "2s")...)
	cmd.Env = append(os.Environ(), "GOTASKS_REDIS_PASSWORD=")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "redis") {
		t.Errorf("%s: the producer with arguments %q did not get as far as Redis: %v\n%s", where, args, err, out)
	}
}

// k8sDeployment is the part of a Deployment checked here.
type k8sDeployment struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Replicas *int `yaml:"replicas"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				TerminationGracePeriodSeconds *int           `yaml:"terminationGracePeriodSeconds"`
				Containers                    []k8sContainer `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type k8sContainer struct {
	Name    string   `yaml:"name"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name      string `yaml:"name"`
		ValueFrom struct {
			SecretKeyRef struct{ Name, Key string } `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string    `yaml:"path"`
		Port yaml.Node `yaml:"port"` // a number or a port name
	} `yaml:"httpGet"`
}

// docs decodes every document of a multi-document YAML stream.
func docs(t *testing.T, name string, src []byte) []yaml.Node {
	t.Helper()
	var out []yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(src))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, n)
	}
}

func kindOf(t *testing.T, n yaml.Node) string {
	t.Helper()
	var k struct{ Kind string }
	if err := n.Decode(&k); err != nil {
		t.Fatal(err)
	}
	return k.Kind
}

const workerYAML = "examples/kubernetes/worker.yaml"

func loadDeployment(t *testing.T) k8sDeployment {
	t.Helper()
	var deps []k8sDeployment
	for _, n := range docs(t, workerYAML, readFile(t, workerYAML)) {
		if kindOf(t, n) != "Deployment" {
			continue
		}
		var d k8sDeployment
		if err := n.Decode(&d); err != nil {
			t.Fatalf("%s: %v", workerYAML, err)
		}
		deps = append(deps, d)
	}
	if len(deps) != 1 {
		t.Fatalf("%s: %d Deployments, want 1", workerYAML, len(deps))
	}
	return deps[0]
}

// probePort resolves a probe's port, a number or the name of a container port.
func probePort(t *testing.T, where string, c k8sContainer, port yaml.Node) int {
	t.Helper()
	if n, err := strconv.Atoi(port.Value); err == nil {
		return n
	}
	for _, p := range c.Ports {
		if p.Name == port.Value {
			return p.ContainerPort
		}
	}
	t.Fatalf("%s: port %q is neither a number nor a named port of the container", where, port.Value)
	return 0
}

func TestKubernetesWorker(t *testing.T) {
	d := loadDeployment(t)
	where := workerYAML
	if d.Spec.Replicas == nil {
		t.Errorf("%s: no replicas (Kubernetes' default is 1), want at least 2 to show scaling out", where)
	} else if *d.Spec.Replicas < 2 {
		t.Errorf("%s: replicas %d, want at least 2 to show scaling out", where, *d.Spec.Replicas)
	}
	for k, v := range d.Spec.Selector.MatchLabels {
		if d.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("%s: selector %s=%s does not match the pod template's labels %v", where, k, v, d.Spec.Template.Metadata.Labels)
		}
	}
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%s: %d containers, want the worker only", where, len(d.Spec.Template.Spec.Containers))
	}
	c := d.Spec.Template.Spec.Containers[0]
	if len(c.Command) > 0 {
		t.Errorf("%s: command %q replaces the image's worker entrypoint; give flags in args", where, c.Command)
	}
	cfg := parseWorkerArgs(t, where, c.Args)
	port := healthPort(t, where, cfg)

	grace := d.Spec.Template.Spec.TerminationGracePeriodSeconds
	if grace == nil {
		t.Errorf("%s: no terminationGracePeriodSeconds (Kubernetes' default of 30s)", where)
	} else if time.Duration(*grace)*time.Second <= cfg.ShutdownTimeout {
		t.Errorf("%s: terminationGracePeriodSeconds %d is not longer than --shutdown-timeout %v: the kubelet would SIGKILL draining workers", where, *grace, cfg.ShutdownTimeout)
	}

	// The probes must be served by the worker's health handler, on the
	// --health-addr port.
	m := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: m.Addr(), ContextTimeoutEnabled: true})
	defer func() { _ = client.Close() }()
	h := worker.HealthHandler(broker.New(client, broker.Options{}).Check, nil)
	for _, p := range []struct {
		name  string
		probe *k8sProbe
		path  string
	}{{"livenessProbe", c.LivenessProbe, worker.LivenessPath}, {"readinessProbe", c.ReadinessProbe, worker.ReadinessPath}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: no %s.httpGet", where, p.name)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path {
			t.Errorf("%s: %s path %q, want %q", where, p.name, g.Path, p.path)
		}
		if got := probePort(t, where+" "+p.name, c, g.Port); got != port {
			t.Errorf("%s: %s on port %d, but --health-addr is %s", where, p.name, got, cfg.HealthAddr)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, g.Path, nil))
		if rec.Code != http.StatusOK {
			t.Errorf("%s: %s: the worker's health handler answers %s with %d %q", where, p.name, g.Path, rec.Code, rec.Body.String())
		}
	}

	secret := false
	for _, e := range c.Env {
		if e.Name == "GOTASKS_REDIS_PASSWORD" && e.ValueFrom.SecretKeyRef.Name != "" && e.ValueFrom.SecretKeyRef.Key != "" {
			secret = true
		}
	}
	if !secret {
		t.Errorf("%s: GOTASKS_REDIS_PASSWORD does not come from a Secret", where)
	}
	if cfg.Broker.Conn.Password != "" || strings.Contains(strings.Join(c.Args, " "), "password") {
		t.Errorf("%s: a password in the args is visible to anyone who can read the pod", where)
	}
	if len(c.Resources.Requests) == 0 || c.Resources.Limits["memory"] == "" {
		t.Errorf("%s: want resource requests and a memory limit", where)
	}
}

// yamlBlocks returns the ```yaml blocks of a Markdown file.
func yamlBlocks(md string) []string {
	var out []string
	for _, m := range regexp.MustCompile("(?ms)^```yaml\n(.*?)^```").FindAllStringSubmatch(md, -1) {
		out = append(out, m[1])
	}
	return out
}

// blockStarted receives when deploytest.block starts; it then holds its
// worker slot until the worker stops.
var blockStarted = make(chan struct{}, 1)

var blockTask = task.Define("deploytest.block", func(ctx context.Context, _ int) (int, error) {
	blockStarted <- struct{}{}
	<-ctx.Done()
	return 0, ctx.Err()
})

// TestKubernetesScalingExample checks the KEDA ScaledObject of the README
// against the Deployment and the broker's real key layout: the keys it
// reads count, as KEDA reads them, the ready tasks at the default priority
// (the :ready list), those at other priorities (the :pending sorted set)
// and the running ones (the :running sorted set).
func TestKubernetesScalingExample(t *testing.T) {
	const readme = "examples/kubernetes/README.md"
	d := loadDeployment(t)
	env := map[string]bool{}
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		env[e.Name] = true
	}
	type trigger struct {
		Type     string
		Metadata map[string]string
	}
	var triggers []trigger
	for _, b := range yamlBlocks(string(readFile(t, readme))) {
		for _, n := range docs(t, readme, []byte(b)) {
			if kindOf(t, n) != "ScaledObject" {
				continue
			}
			var so struct {
				Spec struct {
					ScaleTargetRef struct{ Name string } `yaml:"scaleTargetRef"`
					Triggers       []trigger
				}
			}
			if err := n.Decode(&so); err != nil {
				t.Fatalf("%s: %v", readme, err)
			}
			if so.Spec.ScaleTargetRef.Name != d.Metadata.Name {
				t.Errorf("%s: the ScaledObject scales %q, not the Deployment %q", readme, so.Spec.ScaleTargetRef.Name, d.Metadata.Name)
			}
			triggers = append(triggers, so.Spec.Triggers...)
		}
	}
	if len(triggers) == 0 {
		t.Fatalf("%s: no ScaledObject with triggers", readme)
	}

	m := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: m.Addr(), ContextTimeoutEnabled: true})
	defer func() { _ = client.Close() }()
	b := broker.New(client, broker.Options{})
	task.Configure(map[string]task.Backend{b.Name(): b})
	defer task.Configure(nil)
	ctx := context.Background()
	if _, err := blockTask.Enqueue(ctx, 0); err != nil {
		t.Fatal(err)
	}
	// size returns what KEDA's redis scaler reads: LLEN of a list, ZCARD
	// of a sorted set, 0 for a missing key (Redis deletes empty ones).
	size := func(key string) int64 {
		t.Helper()
		switch typ := client.Type(ctx, key).Val(); typ {
		case "none":
			return 0
		case "list":
			return client.LLen(ctx, key).Val()
		case "zset":
			return client.ZCard(ctx, key).Val()
		default:
			t.Fatalf("%s: key %s is a %q, neither a list nor a sorted set", readme, key, typ)
			return 0
		}
	}
	// want checks that every key in keys counts n; when says in what state.
	want := func(keys []string, n int64, when string) {
		t.Helper()
		for _, key := range keys {
			if got := size(key); got != n {
				t.Errorf("%s: %s counts %d %s, want %d", readme, key, got, when, n)
			}
		}
	}
	var ready, pending, running []string
	for _, tr := range triggers {
		key := tr.Metadata["listName"]
		if tr.Type != "redis" || key == "" {
			t.Errorf("%s: trigger %+v: want type redis with a listName", readme, tr)
			continue
		}
		if pe := tr.Metadata["passwordFromEnv"]; pe != "" && !env[pe] {
			t.Errorf("%s: passwordFromEnv %s is not in the worker container's environment", readme, pe)
		}
		switch {
		case strings.HasSuffix(key, ":ready"):
			ready = append(ready, key)
		case strings.HasSuffix(key, ":pending"):
			pending = append(pending, key)
		case strings.HasSuffix(key, ":running"):
			running = append(running, key)
		default:
			t.Errorf("%s: listName %q is not a :ready, :pending or :running key", readme, key)
		}
	}
	if len(ready) == 0 {
		t.Fatalf("%s: no trigger on a :ready key (the default-priority backlog)", readme)
	}
	if len(running) == 0 {
		t.Fatalf("%s: no trigger on a :running key", readme)
	}
	want(ready, 1, "with one default-priority task ready")
	want(pending, 0, "with only a default-priority task ready")
	want(running, 0, "with no task running")

	// A task at another priority waits in the sorted set. The worker below
	// claims it first (priority 5 > 0) and the default one stays ready.
	if _, err := blockTask.Using(task.Priority(5)).Enqueue(ctx, 0); err != nil {
		t.Fatal(err)
	}
	want(ready, 1, "with one default-priority task ready")
	want(pending, 1, "with one priority-5 task ready")

	w := worker.New(b, worker.Options{Queues: []string{task.DefaultQueue}, Concurrency: 1, Logger: slog.New(slog.DiscardHandler), ShutdownTimeout: time.Millisecond})
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(wctx); err != nil {
			t.Errorf("worker: %v", err)
		}
	}()
	defer func() {
		cancel()
		<-done
	}()
	select {
	case <-blockStarted:
	case <-time.After(10 * time.Second):
		t.Fatal("the worker did not start the task")
	}
	want(pending, 0, "once the priority-5 task runs")
	want(ready, 1, "with the default-priority task still ready")
	want(running, 1, "with one task running")
}
