package deploy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// commandTimeout bounds every command a test runs (a go build included).
const commandTimeout = 5 * time.Minute

// binaries are the commands of the main module the examples run, each
// under /usr/local/bin in the image and on a host.
var binaries = []string{"tftpgw", "tftp-backend", "tftp-collector", "tftpbench"}

// repoRoot is the main module's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "tftpgw")); err != nil {
		t.Fatalf("repository root %s: %v", root, err)
	}
	return root
}

// goTool is the go command on PATH (make's, CI's).
func goTool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command: %v", err)
	}
	return p
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// built returns the directory holding the four binaries, built once per
// test process, statically and with -trimpath as the Dockerfile does.
func built(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "tftpgw-deploy-bin-")
		if buildErr != nil {
			return
		}
		args := []string{"build", "-trimpath", "-o", buildDir + string(filepath.Separator)}
		for _, b := range binaries {
			args = append(args, "./cmd/"+b)
		}
		ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, goTool(t), args...)
		cmd.Dir = repoRoot(t)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left running:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// requireTool returns the path of a program the test needs. Missing, it
// skips the test, except in CI (CI=true), where `make test` installs it
// (.ci/install-deploy) and its absence is a failure.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed (CI installs it with .ci/install-deploy): %v", name, err)
	}
	t.Skipf("%s is not installed (.ci/install-deploy installs it, as root)", name)
	return ""
}

// run runs a command with a bounded time and returns its combined output
// and its exit code (-1 if it did not run to an exit).
func run(t *testing.T, dir string, env []string, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code == -1 {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
		}
	}
	return out.String(), code
}

// flagSpec is a binary's flag set, read from its -h output: each flag's
// name and whether it takes a value.
type flagSpec map[string]bool // name -> takes a value

var (
	flagMu    sync.Mutex
	flagCache = map[string]flagSpec{}
	// flagLine is one flag of Go's flag.PrintDefaults: "  -name" and, for a
	// flag that takes a value, a word naming the value.
	flagLine = regexp.MustCompile(`^  -([A-Za-z0-9][A-Za-z0-9_.-]*)(?:\s+(\S+))?\s*$`)
)

// flagsOf returns the flags of one of the binaries.
func flagsOf(t *testing.T, binary string) flagSpec {
	t.Helper()
	flagMu.Lock()
	defer flagMu.Unlock()
	if f, ok := flagCache[binary]; ok {
		return f
	}
	out, _ := run(t, "", nil, filepath.Join(built(t), binary), "-h")
	f := flagSpec{}
	for _, line := range strings.Split(out, "\n") {
		if m := flagLine.FindStringSubmatch(line); m != nil {
			f[m[1]] = m[2] != ""
		}
	}
	if len(f) < 5 {
		t.Fatalf("%s -h: found only %d flags in:\n%s", binary, len(f), out)
	}
	flagCache[binary] = f
	return f
}

// checkArgs reports the arguments of a command line of binary that are not
// its flags, or flags missing their value. Every argument must be a flag
// (-name, -name=value, or -name value for a flag that takes one).
func checkArgs(t *testing.T, binary string, args []string) []string {
	t.Helper()
	spec := flagsOf(t, binary)
	var bad []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			bad = append(bad, fmt.Sprintf("%q is not a flag", a))
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		takes, ok := spec[name]
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("%s has no flag -%s", binary, name))
		case takes && !hasValue:
			if i+1 == len(args) {
				bad = append(bad, fmt.Sprintf("-%s needs a value", name))
			}
			i++
		}
	}
	return bad
}

// checkTftpgw runs tftpgw with args and -check: the configuration (flags
// and -config file) must be valid.
func checkTftpgw(t *testing.T, args []string) {
	t.Helper()
	args = append(append([]string(nil), args...), "-check")
	out, code := run(t, "", nil, filepath.Join(built(t), "tftpgw"), args...)
	if code != 0 || !strings.Contains(out, "configuration OK") {
		t.Errorf("tftpgw %s: exit %d:\n%s", strings.Join(args, " "), code, out)
	}
}
