package deploy

import (
	"bufio"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The units under systemd/, each named for the binary it runs.
var units = []string{"tftpgw.service", "tftp-backend.service", "tftp-collector.service"}

// unitLine is one directive of a unit file.
type unitLine struct {
	section, key, value string
	line                int
}

// parseUnit reads a unit file's directives. A commented-out directive
// ("#Key=value", no space after the #) is returned too when optional is
// set: those are the options the comments offer, and they must verify as
// well.
func parseUnit(t *testing.T, path string, optional bool) []unitLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []unitLine
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if strings.HasSuffix(l, `\`) {
			t.Fatalf("%s:%d: continuation lines are not used here", path, n)
		}
		if optional && optionalDirective.MatchString(l) {
			l = l[1:]
		}
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "["):
			section = strings.Trim(l, "[]")
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				t.Fatalf("%s:%d: not a directive: %q", path, n, l)
			}
			lines = append(lines, unitLine{section, k, v, n})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// optionalDirective is a commented-out directive the unit offers.
var optionalDirective = regexp.MustCompile(`^#[A-Z][A-Za-z]+=`)

// writeUnits writes the units, with /usr/local/bin/ replaced by the
// directory of the freshly built binaries and the optional directives
// uncommented (edit, if not nil, changes a unit's text first), and
// returns their paths.
func writeUnits(t *testing.T, edit func(name, text string) string) []string {
	t.Helper()
	dir := t.TempDir()
	bin := built(t)
	var paths []string
	for _, u := range units {
		b, err := os.ReadFile(filepath.Join("systemd", u))
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), "/usr/local/bin/", bin+"/")
		var out []string
		for _, l := range strings.Split(text, "\n") {
			if optionalDirective.MatchString(l) {
				l = l[1:]
			}
			out = append(out, l)
		}
		text = strings.Join(out, "\n")
		if edit != nil {
			text = edit(u, text)
		}
		p := filepath.Join(dir, u)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

// systemdEnv makes systemd-analyze print plain text and no pager.
var systemdEnv = []string{"SYSTEMD_LOG_COLOR=0", "SYSTEMD_PAGER=cat", "SYSTEMD_COLORS=0"}

// verifyCopy runs systemd-analyze verify on copies of the units (see
// writeUnits) and returns what it printed and its exit code.
// systemd-analyze exits 0 on an unknown directive or a value it cannot
// parse ("ignoring"), so anything printed counts as a failure. --man=no:
// no man page lookups. No running systemd is needed: verify loads the
// units in a manager of its own, in test mode.
func verifyCopy(t *testing.T, analyze string, edit func(name, text string) string) (string, int) {
	t.Helper()
	paths := writeUnits(t, edit)
	args := append([]string{"verify", "--man=no"}, paths...)
	return run(t, filepath.Dir(paths[0]), systemdEnv, analyze, args...)
}

// maxExposure is the highest exposure level (systemd-analyze security,
// 0 to 100 for 0.0 to 10.0) a unit may have: 2.0, where "OK" ends at 4.0.
// The units are at 1.2 to 1.5.
const maxExposure = 20

// The units' sandboxes, as systemd-analyze security rates them offline.
func TestSystemdUnitsExposureIsLow(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze")
	for _, p := range writeUnits(t, nil) {
		t.Run(filepath.Base(p), func(t *testing.T) {
			out, code := run(t, filepath.Dir(p), systemdEnv, analyze, "security", "--offline=yes", "--no-pager",
				"--threshold="+strconv.Itoa(maxExposure), p)
			level := regexp.MustCompile(`Overall exposure level for \S+: (\S+)`).FindStringSubmatch(out)
			if code != 0 || level == nil {
				t.Errorf("systemd-analyze security: exit %d, want an exposure of at most %.1f:\n%s", code, float64(maxExposure)/10, out)
				return
			}
			t.Logf("exposure %s", level[1])
		})
	}
}

func TestSystemdUnitsPassVerify(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze")
	out, code := verifyCopy(t, analyze, nil)
	if code != 0 || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify: exit %d, want 0 and no output:\n%s", code, out)
	}
}

// The check must be able to fail: each mistake below must make
// systemd-analyze verify complain.
func TestSystemdVerifyCatchesMistakes(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze")
	for _, tc := range []struct {
		name     string
		old, new string
	}{
		{"misspelled directive", "NoNewPrivileges=yes", "NoNewPrivilegs=yes"},
		{"unknown address family", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK", "RestrictAddressFamilies=AF_INET AF_INETT"},
		{"unknown system call group", "SystemCallFilter=@system-service", "SystemCallFilter=@system-servic"},
		{"bad ProtectSystem value", "ProtectSystem=strict", "ProtectSystem=very"},
		{"binary that does not exist", "ExecStart=/usr/local/bin/tftpgw ", "ExecStart=/usr/local/bin/tftpgw-missing "},
		{"dependency that does not exist", "Wants=network-online.target", "Requires=network-onlin.target"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("systemd", "tftpgw.service"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), tc.old) {
				t.Fatalf("tftpgw.service has no %q to change", tc.old)
			}
			bin := built(t)
			old := strings.ReplaceAll(tc.old, "/usr/local/bin/", bin+"/")
			repl := strings.ReplaceAll(tc.new, "/usr/local/bin/", bin+"/")
			out, code := verifyCopy(t, analyze, func(name, text string) string {
				if name != "tftpgw.service" {
					return text
				}
				return strings.Replace(text, old, repl, 1)
			})
			if code == 0 && strings.TrimSpace(out) == "" {
				t.Errorf("systemd-analyze verify accepted tftpgw.service with %s", tc.name)
			}
		})
	}
}

// The tftpgw unit has what the operations guide promises: a plain user
// with the one capability, the sandbox, a reload that checks the file
// first and then sends SIGHUP.
func TestSystemdTftpgwUnitIsSandboxedPlainUser(t *testing.T) {
	have := map[string][]string{}
	for _, l := range parseUnit(t, filepath.Join("systemd", "tftpgw.service"), false) {
		have[l.key] = append(have[l.key], l.value)
	}
	for _, want := range []struct{ key, value string }{
		{"Type", "exec"},
		{"User", "tftpgw"},
		{"Group", "tftpgw"},
		{"AmbientCapabilities", "CAP_NET_BIND_SERVICE"},
		{"CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"},
		{"NoNewPrivileges", "yes"},
		{"ProtectSystem", "strict"},
		{"ProtectHome", "yes"},
		{"PrivateTmp", "yes"},
		{"PrivateDevices", "yes"},
		{"RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX AF_NETLINK"},
		{"SystemCallFilter", "@system-service"},
		{"SystemCallErrorNumber", "EPERM"},
		{"ExecStart", "/usr/local/bin/tftpgw -config /etc/tftpgw/tftpgw.yaml"},
		{"ExecReload", "/usr/local/bin/tftpgw -config /etc/tftpgw/tftpgw.yaml -check"},
		{"ExecReload", "/bin/kill -HUP $MAINPID"},
	} {
		found := false
		for _, v := range have[want.key] {
			found = found || v == want.value
		}
		if !found {
			t.Errorf("tftpgw.service: no %s=%s (has %q)", want.key, want.value, have[want.key])
		}
	}
	if len(have["ExecReload"]) != 2 || have["ExecReload"][1] != "/bin/kill -HUP $MAINPID" {
		t.Errorf("tftpgw.service: ExecReload %q: want the -check first, then the SIGHUP", have["ExecReload"])
	}
}

// Every command line of the units uses flags their binary has, and
// tftpgw's accept examples/tftpgw.yaml (the file the README installs as
// /etc/tftpgw/tftpgw.yaml) with -check.
func TestSystemdCommandLinesAreValid(t *testing.T) {
	config := exampleConfig(t)
	for _, u := range units {
		for _, l := range parseUnit(t, filepath.Join("systemd", u), true) {
			if !strings.HasPrefix(l.key, "Exec") {
				continue
			}
			argv := strings.Fields(l.value)
			name, ok := strings.CutPrefix(argv[0], "/usr/local/bin/")
			if !ok {
				continue // /bin/kill
			}
			t.Run(fmt.Sprintf("%s:%d", u, l.line), func(t *testing.T) {
				if bad := checkArgs(t, name, argv[1:]); len(bad) > 0 {
					t.Errorf("%s=%s: %s", l.key, l.value, strings.Join(bad, "; "))
				}
				if name != "tftpgw" {
					return
				}
				args := make([]string, 0, len(argv))
				for _, a := range argv[1:] {
					if a == "-check" {
						continue
					}
					args = append(args, strings.ReplaceAll(a, "/etc/tftpgw/tftpgw.yaml", config))
				}
				checkTftpgw(t, args)
			})
		}
	}
}

// exampleConfig writes examples/tftpgw.yaml with its root pointing to a
// directory that exists here (-check opens it) and returns the copy.
func exampleConfig(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "examples", "tftpgw.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const rootLine = "\nroot: /srv/tftp\n"
	if !strings.Contains(string(b), rootLine) {
		t.Fatalf("examples/tftpgw.yaml has no %q", strings.TrimSpace(rootLine))
	}
	root := filepath.Join(repoRoot(t), "examples", "tftproot")
	text := strings.Replace(string(b), rootLine, "\nroot: "+root+"\n", 1)
	p := filepath.Join(t.TempDir(), "tftpgw.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The sysusers.d file creates the user and group tftpgw.service runs as,
// with no login shell.
func TestSystemdSysusersCreatesTheUnitsUser(t *testing.T) {
	sysusers := requireTool(t, "systemd-sysusers")
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf, err := filepath.Abs(filepath.Join("systemd", "tftpgw.sysusers"))
	if err != nil {
		t.Fatal(err)
	}
	out, code := run(t, root, nil, sysusers, "--root="+root, conf)
	if code != 0 || strings.Contains(out, conf) {
		t.Fatalf("systemd-sysusers: exit %d:\n%s", code, out)
	}
	passwd, err := os.ReadFile(filepath.Join(root, "etc", "passwd"))
	if err != nil {
		t.Fatal(err)
	}
	group, err := os.ReadFile(filepath.Join(root, "etc", "group"))
	if err != nil {
		t.Fatal(err)
	}
	var unitUser, unitGroup string
	for _, l := range parseUnit(t, filepath.Join("systemd", "tftpgw.service"), false) {
		switch l.key {
		case "User":
			unitUser = l.value
		case "Group":
			unitGroup = l.value
		}
	}
	var entry []string
	for _, l := range strings.Split(string(passwd), "\n") {
		if f := strings.Split(l, ":"); len(f) == 7 && f[0] == unitUser {
			entry = f
		}
	}
	if entry == nil {
		t.Fatalf("no user %q created:\n%s", unitUser, passwd)
	}
	if entry[2] == "0" || !strings.HasSuffix(entry[6], "nologin") {
		t.Errorf("user %q: uid %s, shell %s: want a system user with no login", unitUser, entry[2], entry[6])
	}
	if !strings.Contains(string(group), "\n"+unitGroup+":") && !strings.HasPrefix(string(group), unitGroup+":") {
		t.Errorf("no group %q created:\n%s", unitGroup, group)
	}
	if _, err := user.Lookup(unitUser); err == nil {
		t.Logf("(user %s also exists on this machine)", unitUser)
	}
}
