package deploy

import (
	"debug/buildinfo"
	"debug/elf"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// parseDockerfile parses a Dockerfile as BuildKit's frontend does, with its
// linter (the checks of docker build --check) on. It returns the parser's
// and the linter's warnings apart from the error.
func parseDockerfile(text string) ([]instructions.Stage, []instructions.ArgCommand, []string, error) {
	res, err := parser.Parse(strings.NewReader(text))
	if err != nil {
		return nil, nil, nil, err
	}
	var warnings []string
	for _, w := range res.Warnings {
		warnings = append(warnings, "parser: "+w.Short)
	}
	lint := linter.New(&linter.Config{Warn: func(rule, desc, url, msg string, loc []parser.Range) {
		warnings = append(warnings, "lint: "+rule+": "+msg)
	}})
	stages, args, err := instructions.Parse(res.AST, lint)
	return stages, args, warnings, err
}

func readDockerfile(t *testing.T) ([]instructions.Stage, []instructions.ArgCommand) {
	t.Helper()
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	stages, args, warnings, err := parseDockerfile(string(b))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	for _, w := range warnings {
		t.Errorf("Dockerfile: %s", w)
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile: %d stages, want a build stage and a final one", len(stages))
	}
	return stages, args
}

// imageUser is the USER of the Dockerfile's final stage.
func imageUser(t *testing.T) string {
	t.Helper()
	stages, _ := readDockerfile(t)
	user := ""
	for _, c := range stages[len(stages)-1].Commands {
		if u, ok := c.(*instructions.UserCommand); ok {
			user = u.User
		}
	}
	return user
}

// goBuildRun is the build stage's RUN that runs go build, as one shell
// command line.
func goBuildRun(t *testing.T, stages []instructions.Stage) (string, instructions.Stage) {
	t.Helper()
	for _, s := range stages[:len(stages)-1] {
		for _, c := range s.Commands {
			if r, ok := c.(*instructions.RunCommand); ok && strings.Contains(strings.Join(r.CmdLine, " "), "go build") {
				if !r.PrependShell {
					t.Fatalf("Dockerfile: the go build RUN is in exec form; this test runs it with sh -c")
				}
				return strings.Join(r.CmdLine, " "), s
			}
		}
	}
	t.Fatal("Dockerfile: no RUN with go build in a build stage")
	return "", instructions.Stage{}
}

// The final stage is the run-time image: static base, no shell needed, a
// non-root user, the binaries of the build stage.
func TestDockerfileFinalStageIsStaticNonRootWithoutShell(t *testing.T) {
	stages, _ := readDockerfile(t)
	final := stages[len(stages)-1]
	if final.BaseName != "scratch" && !strings.HasPrefix(final.BaseName, "gcr.io/distroless/static") {
		t.Errorf("final stage FROM %s: want scratch or gcr.io/distroless/static", final.BaseName)
	}
	build, buildStage := goBuildRun(t, stages)
	var user string
	var entrypoint []string
	copied := false
	for _, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.RunCommand:
			t.Errorf("final stage runs %q: there is no shell in it", strings.Join(c.CmdLine, " "))
		case *instructions.UserCommand:
			user = c.User
		case *instructions.EntrypointCommand:
			if c.PrependShell {
				t.Errorf("ENTRYPOINT %q in shell form: there is no shell; use the JSON form", c.CmdLine)
			}
			entrypoint = c.CmdLine
		case *instructions.CmdCommand:
			if c.PrependShell {
				t.Errorf("CMD %q in shell form: there is no shell; use the JSON form", c.CmdLine)
			}
		case *instructions.CopyCommand:
			if c.From != buildStage.Name {
				t.Errorf("final stage copies from %q, want the build stage %q", c.From, buildStage.Name)
			}
			for _, src := range c.SourcePaths {
				if !strings.Contains(build, " -o "+src+" ") {
					t.Errorf("final stage copies %s, which the go build (%s) does not write", src, build)
				}
			}
			if c.DestPath != "/usr/local/bin/" {
				t.Errorf("final stage copies to %s, want /usr/local/bin/ (the manifests run /usr/local/bin/NAME)", c.DestPath)
			}
			copied = true
		}
	}
	if !copied {
		t.Error("final stage copies nothing from the build stage")
	}
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("USER %q: want a numeric non-root uid (Kubernetes' runAsNonRoot can check only a number)", user)
	}
	if len(entrypoint) != 1 || entrypoint[0] != "/usr/local/bin/tftpgw" {
		t.Errorf("ENTRYPOINT %q, want [/usr/local/bin/tftpgw]", entrypoint)
	}
}

// The build stage's go build is static and reproducible, builds every
// command the examples run, with a Go at least as new as go.mod asks.
func TestDockerfileBuildStage(t *testing.T) {
	stages, metaArgs := readDockerfile(t)
	build, _ := goBuildRun(t, stages)
	for _, want := range []string{"CGO_ENABLED=0", " -trimpath", " -o /out/ "} {
		if !strings.Contains(build, want) {
			t.Errorf("go build line %q has no %q", build, want)
		}
	}
	for _, b := range binaries {
		if !strings.Contains(build+" ", " ./cmd/"+b+" ") {
			t.Errorf("go build line does not build ./cmd/%s", b)
		}
	}
	for _, pkg := range regexp.MustCompile(`\./cmd/[^ ]+`).FindAllString(build, -1) {
		if _, err := os.Stat(filepath.Join(repoRoot(t), pkg, "main.go")); err != nil {
			t.Errorf("go build names %s: %v", pkg, err)
		}
	}

	// The Go of the image: ARG GO_VERSION, at least go.mod's go line.
	var goVersion string
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			if kv.Key == "GO_VERSION" && kv.Value != nil {
				goVersion = *kv.Value
			}
		}
	}
	mod, err := os.ReadFile(filepath.Join(repoRoot(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindStringSubmatch(string(mod))
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	img := regexp.MustCompile(`^(\d+)\.(\d+)`).FindStringSubmatch(goVersion)
	if img == nil {
		t.Fatalf("ARG GO_VERSION=%q: want MAJOR.MINOR", goVersion)
	}
	if cmpVersion(img[1:], m[1:]) < 0 {
		t.Errorf("ARG GO_VERSION=%s is older than go.mod's go %s.%s", goVersion, m[1], m[2])
	}
	if !strings.Contains(stages[0].BaseName, "${GO_VERSION}") {
		t.Errorf("build stage FROM %s does not use ARG GO_VERSION", stages[0].BaseName)
	}
}

func cmpVersion(a, b []string) int {
	for i := range a {
		x, _ := strconv.Atoi(a[i])
		y, _ := strconv.Atoi(b[i])
		if x != y {
			return x - y
		}
	}
	return 0
}

// The go build line of the Dockerfile, run for real with sh on the build
// context Docker would send (the repository minus Dockerfile.dockerignore),
// gives static executables: no program interpreter, no shared library,
// built with CGO_ENABLED=0 and -trimpath.
func TestDockerfileGoBuildGivesStaticBinaries(t *testing.T) {
	stages, _ := readDockerfile(t)
	build, _ := goBuildRun(t, stages)
	ctxDir := buildContext(t)
	out := t.TempDir()
	cmdline := strings.Replace(build, " -o /out/ ", " -o "+out+"/ ", 1)
	env := []string{
		"TARGETOS=linux", "TARGETARCH=" + runtime.GOARCH,
		"PATH=" + filepath.Dir(goTool(t)) + string(os.PathListSeparator) + os.Getenv("PATH"),
		"GOFLAGS=-mod=readonly",
	}
	if o, code := run(t, ctxDir, env, "/bin/sh", "-c", cmdline); code != 0 {
		t.Fatalf("sh -c %q: exit %d:\n%s", cmdline, code, o)
	}
	for _, b := range binaries {
		p := filepath.Join(out, b)
		f, err := elf.Open(p)
		if err != nil {
			t.Errorf("%s: %v", b, err)
			continue
		}
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				t.Errorf("%s has a program interpreter (PT_INTERP): dynamically linked", b)
			}
		}
		if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
			t.Errorf("%s needs shared libraries %v (%v)", b, libs, err)
		}
		f.Close()
		info, err := buildinfo.ReadFile(p)
		if err != nil {
			t.Errorf("%s: %v", b, err)
			continue
		}
		settings := map[string]string{}
		for _, s := range info.Settings {
			settings[s.Key] = s.Value
		}
		if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
			t.Errorf("%s: built with CGO_ENABLED=%q -trimpath=%q, want 0 and true", b, settings["CGO_ENABLED"], settings["-trimpath"])
		}
	}
}

// buildContext copies the repository as docker build would send it: every
// file but those Dockerfile.dockerignore excludes.
func buildContext(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	f, err := os.Open("Dockerfile.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	patterns, err := ignorefile.ReadAll(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	copied := 0
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		excluded, err := pm.MatchesOrParentMatches(filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		if excluded {
			if d.IsDir() && !pm.Exclusions() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			copied++
			return copyFile(p, target)
		}
		return nil // symbolic links and others: go build needs none
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{".git", "bin"} {
		if _, err := os.Stat(filepath.Join(dst, gone)); err == nil {
			t.Errorf("the build context holds %s: Dockerfile.dockerignore should leave it out", gone)
		}
	}
	if !slices.ContainsFunc([]string{"go.mod", "go.sum"}, func(n string) bool {
		_, err := os.Stat(filepath.Join(dst, n))
		return err == nil
	}) {
		t.Error("the build context has no go.mod or go.sum")
	}
	t.Logf("build context: %d files", copied)
	return dst
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// The parser and linter catch mistakes: the checks above can fail.
func TestDockerfileParserCatchesMistakes(t *testing.T) {
	for _, tc := range []struct{ name, text string }{
		{"unknown instruction", "FROM scratch\nCOPPY a /b\n"},
		{"bad flag", "FROM scratch\nCOPY --frm=build /out/ /usr/local/bin/\n"},
		{"ARG without a name", "FROM scratch\nARG\n"},
		{"lint: FROM and AS in different cases", "FROM golang:1.26 as build\nFROM scratch\nCOPY --from=build /out/ /usr/local/bin/\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, warnings, err := parseDockerfile(tc.text)
			if err == nil && len(warnings) == 0 {
				t.Errorf("accepted:\n%s", tc.text)
			}
			t.Logf("%v %q", err, warnings)
		})
	}
}
