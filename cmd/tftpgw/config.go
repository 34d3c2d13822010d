package main

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/policy"
	"github.com/tftpgw/tftpgw/gateway/rewrite"
	"github.com/tftpgw/tftpgw/internal/bytesize"
)

// The configuration file (-config FILE) is YAML. Every flag has a key
// (flagKeys); flags given on the command line override the file. Rewrite
// rules and policy exist only in the file. examples/tftpgw.yaml documents
// every key.

// fileConfig is the file's document. Pointer fields are nil when their
// key is absent, so that only the keys present replace the defaults.
type fileConfig struct {
	Listen  *listenList     `yaml:"listen"`
	Root    *string         `yaml:"root"`
	User    *string         `yaml:"user"`
	EdgeID  *string         `yaml:"edge_id"`
	Backend *backendSection `yaml:"backend"`
	TFTP    *tftpSection    `yaml:"tftp"`
	Rewrite []rewriteEntry  `yaml:"rewrite"`
	Policy  []policyEntry   `yaml:"policy"`
	Limits  *limitsSection  `yaml:"limits"`
	Stats   *statsSection   `yaml:"stats"`
	Metrics *string         `yaml:"metrics"`
	Cache   *cacheSection   `yaml:"cache"`
	Log     *logSection     `yaml:"log"`
	Upload  *uploadSection  `yaml:"upload"`
	HTTP    *httpSection    `yaml:"http"`
	Tracing *tracingSection `yaml:"tracing"`
}

type httpSection struct {
	Listen         *string   `yaml:"listen"`
	Cert           *string   `yaml:"cert"`
	Key            *string   `yaml:"key"`
	Timeout        *duration `yaml:"timeout"`
	MaxConnections *int      `yaml:"max_connections"`
}

type tracingSection struct {
	FilenameTraceparent *bool `yaml:"filename_traceparent"`
}

type uploadSection struct {
	Allow     *[]string `yaml:"allow"`
	MaxSize   *sizeText `yaml:"max_size"`
	Overwrite *bool     `yaml:"overwrite"`
	Path      *string   `yaml:"path"`
}

type tlsSection struct {
	Enabled    *bool   `yaml:"enabled"`
	CA         *string `yaml:"ca"`
	Cert       *string `yaml:"cert"`
	Key        *string `yaml:"key"`
	ServerName *string `yaml:"server_name"`
}

type backendSection struct {
	Target        *string     `yaml:"target"`
	TLS           *tlsSection `yaml:"tls"`
	TokenFile     *string     `yaml:"token_file"`
	HeaderTimeout *duration   `yaml:"header_timeout"`
	IdleTimeout   *duration   `yaml:"idle_timeout"`
	Resumes       *int        `yaml:"resumes"`
	ResumeTimeout *duration   `yaml:"resume_timeout"`
}

type tftpSection struct {
	Timeout       *duration  `yaml:"timeout"`
	MinTimeout    *duration  `yaml:"min_timeout"`
	Retries       *int       `yaml:"retries"`
	MaxBlksize    *int       `yaml:"max_blksize"`
	MaxWindowsize *int       `yaml:"max_windowsize"`
	SinglePort    *bool      `yaml:"single_port"`
	PortRange     *portRange `yaml:"port_range"`
	RefuseOptions *[]string  `yaml:"refuse_options"`
	DrainTimeout  *duration  `yaml:"drain_timeout"`
}

type limitsSection struct {
	MaxSessions              *int      `yaml:"max_sessions"`
	MaxSessionsPerClient     *int      `yaml:"max_sessions_per_client"`
	RequestsPerSecond        *float64  `yaml:"rrq_per_second_per_client"`
	MaxWindowMemory          *sizeText `yaml:"max_window_memory"`
	MaxWindowMemoryPerClient *sizeText `yaml:"max_window_memory_per_client"`
}

type statsSection struct {
	Sink      *string     `yaml:"sink"`
	Interval  *duration   `yaml:"interval"`
	TLS       *tlsSection `yaml:"tls"`
	TokenFile *string     `yaml:"token_file"`
}

type cacheSection struct {
	Size   *sizeText `yaml:"size"`
	MaxAge *duration `yaml:"max_age"`
}

type logSection struct {
	Format *string `yaml:"format"`
	Level  *string `yaml:"level"`
}

// errorEntry is a TFTP error a rule sends.
type errorEntry struct {
	Code    *int    `yaml:"code"`
	Message *string `yaml:"message"`
}

type rewriteEntry struct {
	Match     string      `yaml:"match"`
	Replace   *string     `yaml:"replace"`
	Lowercase bool        `yaml:"lowercase"`
	IfExists  bool        `yaml:"if_exists"`
	Deny      bool        `yaml:"deny"`
	Error     *errorEntry `yaml:"error"`
}

type policyEntry struct {
	Clients       []prefix    `yaml:"clients"`
	Allow         *bool       `yaml:"allow"`
	Action        *string     `yaml:"action"`
	Error         *errorEntry `yaml:"error"`
	RefuseOptions []string    `yaml:"refuse_options"`
	MaxBlksize    int         `yaml:"max_blksize"`
	MaxWindowsize int         `yaml:"max_windowsize"`
	MaxSessions   int         `yaml:"max_sessions_per_client"`
	Rate          float64     `yaml:"rrq_per_second_per_client"`
	Uploads       *string     `yaml:"uploads"`
}

// flagKeys maps each flag to its key in the file. Every flag but -config
// and -check has one (TestEveryFlagHasAKey).
var flagKeys = map[string]string{
	"listen":                       "listen",
	"root":                         "root",
	"user":                         "user",
	"edge-id":                      "edge_id",
	"backend":                      "backend.target",
	"backend-tls":                  "backend.tls.enabled",
	"backend-ca":                   "backend.tls.ca",
	"backend-cert":                 "backend.tls.cert",
	"backend-key":                  "backend.tls.key",
	"backend-server-name":          "backend.tls.server_name",
	"backend-token-file":           "backend.token_file",
	"backend-header-timeout":       "backend.header_timeout",
	"backend-idle-timeout":         "backend.idle_timeout",
	"backend-resumes":              "backend.resumes",
	"backend-resume-timeout":       "backend.resume_timeout",
	"timeout":                      "tftp.timeout",
	"min-timeout":                  "tftp.min_timeout",
	"retries":                      "tftp.retries",
	"max-blksize":                  "tftp.max_blksize",
	"max-windowsize":               "tftp.max_windowsize",
	"single-port":                  "tftp.single_port",
	"port-range":                   "tftp.port_range",
	"refuse-options":               "tftp.refuse_options",
	"drain-timeout":                "tftp.drain_timeout",
	"max-sessions":                 "limits.max_sessions",
	"max-sessions-per-client":      "limits.max_sessions_per_client",
	"client-rate":                  "limits.rrq_per_second_per_client",
	"max-window-memory":            "limits.max_window_memory",
	"max-window-memory-per-client": "limits.max_window_memory_per_client",
	"stats-sink":                   "stats.sink",
	"stats-interval":               "stats.interval",
	"stats-sink-tls":               "stats.tls.enabled",
	"stats-sink-ca":                "stats.tls.ca",
	"stats-sink-cert":              "stats.tls.cert",
	"stats-sink-key":               "stats.tls.key",
	"stats-sink-server-name":       "stats.tls.server_name",
	"stats-sink-token-file":        "stats.token_file",
	"metrics":                      "metrics",
	"cache-size":                   "cache.size",
	"cache-max-age":                "cache.max_age",
	"log-format":                   "log.format",
	"log-level":                    "log.level",
	"upload-allow":                 "upload.allow",
	"upload-max-size":              "upload.max_size",
	"upload-overwrite":             "upload.overwrite",
	"upload-path":                  "upload.path",
	"http":                         "http.listen",
	"http-cert":                    "http.cert",
	"http-key":                     "http.key",
	"http-timeout":                 "http.timeout",
	"http-max-conns":               "http.max_connections",
	"trace-filename-traceparent":   "tracing.filename_traceparent",
}

// configFile is a configuration file read: its options and where each key
// was, for error messages.
type configFile struct {
	path    string
	lines   map[string]int       // key path ("tftp.timeout", "policy[1].clients[0]") -> line
	values  map[string]string    // "LINE:COLUMN" of a value -> its key path
	byLine  map[int][]keyedValue // the values on each line, in order
	failed  map[string]bool      // the rules ("policy[1]") holding a value the decoder refused
	refused []string             // the key paths of the values the decoder refused
}

// keyedValue is a value of the file and its key path.
type keyedValue struct {
	path string
	n    *yaml.Node
}

// where names a key of the file: "FILE:LINE: key".
func (f *configFile) where(key string) string {
	if l, ok := f.lines[key]; ok {
		return fmt.Sprintf("%s:%d: %s", f.path, l, key)
	}
	return fmt.Sprintf("%s: %s", f.path, key)
}

// loadConfigFile reads the file at path and applies its keys to o, marking
// the flags they stand for in set. Errors name the file, the line and
// the key. A file that is not YAML returns no configFile; otherwise the
// keys the decoder accepted are applied even when it refused others (an
// unknown key, a value of the wrong type), so that validate can report
// every other problem too: the error then lists the refused ones, and
// the refused values keep their defaults.
func loadConfigFile(path string, o *options, set map[string]bool) (*configFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-config: %w", err)
	}
	f := &configFile{path: path, lines: map[string]int{}, values: map[string]string{},
		byLine: map[int][]keyedValue{}, failed: map[string]bool{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, f.yamlError(err)
	}
	if len(doc.Content) == 0 {
		return f, nil // an empty file: every default
	}
	f.collect(doc.Content[0], "")
	var fc fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var decodeErr error
	if err := dec.Decode(&fc); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, f.yamlError(err)
		}
		decodeErr = f.yamlError(err)
		// Again without the refused values, which the decoder may have
		// left as zeros: validate would refuse those too. Unknown keys
		// are ignored this time (reported above).
		f.prune(doc.Content[0], "", f.pruned())
		fc = fileConfig{}
		doc.Decode(&fc) // what it refuses now was reported above
	}
	return f, errors.Join(decodeErr, f.apply(&fc, o, set))
}

// pruned returns the keys to remove from the document so that it
// decodes without the values refused: the key of each, or of the list
// holding it. A value in a rewrite rule or a policy rule marks the rule
// as failed instead (removing it would renumber the rules after it):
// its other errors are not reported.
func (f *configFile) pruned() map[string]bool {
	keys := map[string]bool{}
	for _, k := range f.refused {
		if i := strings.IndexByte(k, '['); i >= 0 {
			if list := k[:i]; list == "rewrite" || list == "policy" {
				f.failed[k[:strings.IndexByte(k, ']')+1]] = true
				continue
			}
			k = k[:i]
		}
		keys[k] = true
	}
	return keys
}

// prune removes the keys of the mapping n (at path) and of the mappings
// under it that are in keys.
func (f *configFile) prune(n *yaml.Node, path string, keys map[string]bool) {
	if n.Kind != yaml.MappingNode {
		return
	}
	kept := n.Content[:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i].Value
		if path != "" {
			k = path + "." + k
		}
		if keys[k] {
			continue
		}
		f.prune(n.Content[i+1], k, keys)
		kept = append(kept, n.Content[i], n.Content[i+1])
	}
	n.Content = kept
}

// collect records the line of every key under n, and the key of every
// value.
func (f *configFile) collect(n *yaml.Node, path string) {
	f.values[strconv.Itoa(n.Line)+":"+strconv.Itoa(n.Column)] = path
	f.byLine[n.Line] = append(f.byLine[n.Line], keyedValue{path, n})
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			if path != "" {
				k = path + "." + k
			}
			f.lines[k] = n.Content[i].Line
			f.collect(n.Content[i+1], k)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			k := path + "[" + strconv.Itoa(i) + "]"
			f.lines[k] = c.Line
			f.collect(c, k)
		}
	}
}

// yamlTypeName turns the decoder's Go type names into the file's keys.
var yamlTypeName = strings.NewReplacer(
	"main.fileConfig", "the top level",
	"main.backendSection", "backend",
	"main.tlsSection", "tls",
	"main.tftpSection", "tftp",
	"main.limitsSection", "limits",
	"main.statsSection", "stats",
	"main.cacheSection", "cache",
	"main.logSection", "log",
	"main.uploadSection", "upload",
	"main.tracingSection", "tracing",
	"main.errorEntry", "error",
	"main.rewriteEntry", "a rewrite rule",
	"main.policyEntry", "a policy rule",
)

var yamlNotFound = regexp.MustCompile(`field (\S+) not found in type (.+)$`)

// yamlCannot is the decoder's type error: the line, the value's tag, the
// value (cut to 7 bytes and "..." when longer than 10) for a scalar, and
// the Go type.
var yamlCannot = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+)(?: `(.*)`)? into (\\S+)$")

// yamlError makes the decoder's error read as the file's: "FILE:LINE:
// unknown key x in tftp", "FILE:LINE: tftp.retries: want an integer, got
// "many"". It notes the key paths of the values refused in f.refused.
func (f *configFile) yamlError(err error) error {
	var lines []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		lines = te.Errors
	} else {
		lines = []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var errs []error
	named := map[*yaml.Node]bool{}
	for _, l := range lines {
		if m := nodeAt.FindStringSubmatch(l); m != nil && f.values[m[1]] != "" {
			f.refused = append(f.refused, f.values[m[1]])
		}
		if m := yamlCannot.FindStringSubmatch(l); m != nil {
			if v, ok := f.valueOn(m[1], m[2], m[3], named); ok {
				f.refused = append(f.refused, v.path)
				l = fmt.Sprintf("line %s: %s: want %s, got %s", m[1], v.path, yamlWant(m[4]), yamlGot(v.n))
			}
		}
		l = yamlTypeName.Replace(l)
		l = nodeAt.ReplaceAllStringFunc(l, func(m string) string {
			if k := f.values[nodeAt.FindStringSubmatch(m)[1]]; k != "" {
				return k + ": "
			}
			return ""
		})
		l = yamlNotFound.ReplaceAllString(l, "unknown key $1 in $2")
		if rest, ok := strings.CutPrefix(l, "line "); ok {
			if n, msg, ok := strings.Cut(rest, ": "); ok {
				errs = append(errs, fmt.Errorf("%s:%s: %s", f.path, n, msg))
				continue
			}
		}
		errs = append(errs, fmt.Errorf("%s: %s", f.path, l))
	}
	return errors.Join(errs...)
}

// valueOn finds the value of a type error: on line, of the tag, written
// value (as the decoder cuts it), and not named already.
func (f *configFile) valueOn(line, tag, value string, named map[*yaml.Node]bool) (keyedValue, bool) {
	n, _ := strconv.Atoi(line)
	for _, v := range f.byLine[n] {
		var ok bool
		switch tag {
		case "seq":
			ok = v.n.Kind == yaml.SequenceNode
		case "map":
			ok = v.n.Kind == yaml.MappingNode
		default:
			cut, isCut := strings.CutSuffix(value, "...")
			ok = v.n.Kind == yaml.ScalarNode && (v.n.Value == value || isCut && len(v.n.Value) > 10 && strings.HasPrefix(v.n.Value, cut))
		}
		if ok && !named[v.n] {
			named[v.n] = true
			return v, true
		}
	}
	return keyedValue{}, false
}

// yamlWant says what a Go type of fileConfig takes.
func yamlWant(goType string) string {
	switch {
	case goType == "int":
		return "an integer"
	case goType == "float64":
		return "a number"
	case goType == "bool":
		return "true or false"
	case goType == "string":
		return "a string"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "main."):
		return "a mapping of keys"
	}
	return goType
}

// yamlGot describes the value n for an error.
func yamlGot(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	return strconv.Quote(n.Value)
}

// apply sets o's fields from the keys present in fc.
func (f *configFile) apply(fc *fileConfig, o *options, set map[string]bool) error {
	a := applier{set: set}
	if fc.Listen != nil {
		o.Serving.Listen = strings.Join(*fc.Listen, ",")
		set["listen"] = true
	}
	put(a, "root", fc.Root, &o.Serving.Root)
	put(a, "user", fc.User, &o.User)
	put(a, "edge-id", fc.EdgeID, &o.EdgeID)
	put(a, "metrics", fc.Metrics, &o.Stats.Metrics)
	if b := fc.Backend; b != nil {
		put(a, "backend", b.Target, &o.Backend.Target)
		a.tls("backend", b.TLS, &o.Backend.clientOptions)
		put(a, "backend-token-file", b.TokenFile, &o.Backend.TokenFile)
		putDuration(a, "backend-header-timeout", b.HeaderTimeout, &o.Backend.HeaderTimeout)
		putDuration(a, "backend-idle-timeout", b.IdleTimeout, &o.Backend.IdleTimeout)
		put(a, "backend-resumes", b.Resumes, &o.Backend.Resumes)
		putDuration(a, "backend-resume-timeout", b.ResumeTimeout, &o.Backend.ResumeTimeout)
	}
	if t := fc.TFTP; t != nil {
		s := &o.Serving
		putDuration(a, "timeout", t.Timeout, &s.Timeout)
		putDuration(a, "min-timeout", t.MinTimeout, &s.MinTimeout)
		put(a, "retries", t.Retries, &s.Retries)
		put(a, "max-blksize", t.MaxBlksize, &s.MaxBlksize)
		put(a, "max-windowsize", t.MaxWindowsize, &s.MaxWindowsize)
		put(a, "single-port", t.SinglePort, &s.SinglePort)
		if t.PortRange != nil {
			s.PortRange, a.set["port-range"] = t.PortRange.r, true
		}
		put(a, "refuse-options", t.RefuseOptions, (*[]string)(&s.RefuseOptions))
		putDuration(a, "drain-timeout", t.DrainTimeout, &s.DrainTimeout)
	}
	if l := fc.Limits; l != nil {
		put(a, "max-sessions", l.MaxSessions, &o.Limits.MaxSessions)
		put(a, "max-sessions-per-client", l.MaxSessionsPerClient, &o.Limits.MaxSessionsPerClient)
		put(a, "client-rate", l.RequestsPerSecond, &o.Limits.ClientRate)
		if l.MaxWindowMemory != nil {
			o.Limits.MaxWindowMemory, set["max-window-memory"] = l.MaxWindowMemory.n, true
		}
		if l.MaxWindowMemoryPerClient != nil {
			o.Limits.MaxWindowMemoryPerClient, set["max-window-memory-per-client"] = l.MaxWindowMemoryPerClient.n, true
		}
	}
	if s := fc.Stats; s != nil {
		put(a, "stats-sink", s.Sink, &o.Stats.Sink.Target)
		putDuration(a, "stats-interval", s.Interval, &o.Stats.Interval)
		a.tls("stats-sink", s.TLS, &o.Stats.Sink)
		put(a, "stats-sink-token-file", s.TokenFile, &o.Stats.Sink.TokenFile)
	}
	if c := fc.Cache; c != nil {
		if c.Size != nil {
			o.Cache.Size, set["cache-size"] = bytesize.Size(c.Size.n), true
		}
		putDuration(a, "cache-max-age", c.MaxAge, &o.Cache.MaxAge)
	}
	if l := fc.Log; l != nil {
		put(a, "log-format", l.Format, &o.Log.Format)
		put(a, "log-level", l.Level, &o.Log.Level)
	}
	if u := fc.Upload; u != nil {
		put(a, "upload-allow", u.Allow, (*[]string)(&o.Upload.Allow))
		if u.MaxSize != nil {
			o.Upload.MaxSize, set["upload-max-size"] = bytesize.Size(u.MaxSize.n), true
		}
		put(a, "upload-overwrite", u.Overwrite, &o.Upload.Overwrite)
		put(a, "upload-path", u.Path, &o.Upload.Path)
	}
	if h := fc.HTTP; h != nil {
		put(a, "http", h.Listen, &o.HTTP.Listen)
		put(a, "http-cert", h.Cert, &o.HTTP.Cert)
		put(a, "http-key", h.Key, &o.HTTP.Key)
		putDuration(a, "http-timeout", h.Timeout, &o.HTTP.Timeout)
		put(a, "http-max-conns", h.MaxConnections, &o.HTTP.MaxConns)
	}
	if t := fc.Tracing; t != nil {
		put(a, "trace-filename-traceparent", t.FilenameTraceparent, &o.Tracing.FilenameTraceparent)
	}

	var errs []error
	for i, r := range fc.Rewrite {
		rule, err := r.rule()
		if key := fmt.Sprintf("rewrite[%d]", i); err != nil && !f.failed[key] {
			errs = append(errs, fmt.Errorf("%s: %w", f.where(key), err))
		}
		o.Rewrite = append(o.Rewrite, rule)
	}
	for i, p := range fc.Policy {
		rule, err := p.rule()
		if key := fmt.Sprintf("policy[%d]", i); err != nil && !f.failed[key] {
			errs = append(errs, fmt.Errorf("%s: %w", f.where(key), err))
		}
		o.Policy = append(o.Policy, rule)
	}
	return errors.Join(errs...)
}

// applier marks the flags whose keys the file sets.
type applier struct{ set map[string]bool }

func put[T any](a applier, flag string, v *T, dst *T) {
	if v != nil {
		*dst = *v
		a.set[flag] = true
	}
}

func putDuration(a applier, flag string, v *duration, dst *time.Duration) {
	if v != nil {
		*dst = time.Duration(*v)
		a.set[flag] = true
	}
}

// tls applies a tls section to the client options of the flags named
// NAME-tls, NAME-ca, and so on.
func (a applier) tls(name string, t *tlsSection, c *clientOptions) {
	if t == nil {
		return
	}
	put(a, name+"-tls", t.Enabled, &c.TLS)
	put(a, name+"-ca", t.CA, &c.CA)
	put(a, name+"-cert", t.Cert, &c.Cert)
	put(a, name+"-key", t.Key, &c.Key)
	put(a, name+"-server-name", t.ServerName, &c.ServerName)
}

func (e *errorEntry) tftpError(def gateway.ErrorCode, defMsg string) (*gateway.Error, error) {
	if e == nil {
		return nil, nil
	}
	out := &gateway.Error{Code: def, Message: defMsg}
	if e.Code != nil {
		if *e.Code < 0 || *e.Code > int(gateway.ErrOptionNegotiation) {
			return nil, fmt.Errorf("error code %d: want 0 to 8 (RFC 1350, 2347)", *e.Code)
		}
		out.Code = gateway.ErrorCode(*e.Code)
	}
	if e.Message != nil {
		out.Message = *e.Message
	}
	return out, nil
}

// rule converts a policy entry: allow true, or false with action error
// (the default) or drop.
func (p *policyEntry) rule() (policy.Rule, error) {
	r := policy.Rule{
		RefuseOptions:        p.RefuseOptions,
		MaxBlockSize:         p.MaxBlksize,
		MaxWindowSize:        p.MaxWindowsize,
		MaxSessionsPerClient: p.MaxSessions,
		ClientRequestRate:    p.Rate,
	}
	for _, c := range p.Clients {
		r.Clients = append(r.Clients, c.p)
	}
	action := ""
	if p.Action != nil {
		action = *p.Action
	}
	switch {
	case p.Allow == nil && action != "":
		return r, fmt.Errorf("action %q needs allow: false", action)
	case p.Allow == nil:
	case *p.Allow && action != "":
		return r, fmt.Errorf("action %q with allow: true: an action is what happens to requests that are not allowed", action)
	case *p.Allow:
		r.Access = policy.Allow
	case action == "" || action == "error":
		r.Access = policy.Refuse
	case action == "drop":
		r.Access = policy.Drop
	default:
		return r, fmt.Errorf("action %q: want error or drop", action)
	}
	if p.Uploads != nil {
		switch *p.Uploads {
		case "true", "allow":
			r.Uploads = policy.Allow
		case "false", "refuse", "error":
			r.Uploads = policy.Refuse
		case "drop":
			r.Uploads = policy.Drop
		default:
			return r, fmt.Errorf("uploads %q: want true, false or drop", *p.Uploads)
		}
	}
	if p.Error != nil && r.Access != policy.Refuse {
		return r, errors.New("error is what a rule with allow: false (and action: error) sends")
	}
	e, err := p.Error.tftpError(gateway.ErrAccessViolation, "access violation")
	if err != nil {
		return r, err
	}
	r.Error = e
	// The rest (clients, options, ranges) policy.New checks, naming the
	// rule by index.
	return r, nil
}

// nodeError is an error about the value of n. As a yaml.TypeError, it
// lets the decoder go on and report the file's other errors too.
func nodeError(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: @%d:%d@ ", n.Line, n.Line, n.Column) + fmt.Sprintf(format, args...)}}
}

// nodeAt is the "@LINE:COLUMN@ " of a nodeError, which yamlError replaces
// with the key of the value there.
var nodeAt = regexp.MustCompile(`@(\d+:\d+)@ `)

// listenList is listen: one address or a list of them.
type listenList []string

func (l *listenList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*l = listenList{n.Value}
		return nil
	case yaml.SequenceNode:
		var s []string
		if err := n.Decode(&s); err != nil {
			return err
		}
		if len(s) == 0 {
			return nodeError(n, "listen: no address")
		}
		*l = s
		return nil
	}
	return nodeError(n, "listen: want an address or a list of addresses")
}

// duration is a duration written with its unit ("1s", "500ms"): a bare
// number is refused rather than taken as nanoseconds.
type duration time.Duration

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return nodeError(n, "%q: want a duration with its unit, such as 1s, 500ms or 2m", n.Value)
	}
	*d = duration(v)
	return nil
}

// sizeText is a number of bytes, with an optional binary suffix
// ("64MiB"), as the size flags take it (sizeValue): validate refuses a
// negative one, but -1 where the key allows "no limit".
type sizeText struct{ n int64 }

func (s *sizeText) UnmarshalYAML(n *yaml.Node) error {
	var v sizeValue
	if err := v.Set(n.Value); n.Kind != yaml.ScalarNode || err != nil {
		return nodeError(n, "%q: want a number of bytes such as 1073741824 or 1GiB", n.Value)
	}
	s.n = int64(v)
	return nil
}

// portRange is tftp.port_range: "LO-HI", or one port.
type portRange struct{ r gateway.PortRange }

func (p *portRange) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return nodeError(n, "want a port range such as \"50000-50999\"")
	}
	if err := p.r.UnmarshalText([]byte(n.Value)); err != nil {
		return nodeError(n, "%v", err)
	}
	return nil
}

// prefix is a client network: a CIDR prefix, or one address.
type prefix struct{ p netip.Prefix }

func (p *prefix) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		if v, err := netip.ParsePrefix(n.Value); err == nil {
			p.p = v
			return nil
		}
		if a, err := netip.ParseAddr(n.Value); err == nil && a.Zone() == "" {
			p.p = netip.PrefixFrom(a, a.BitLen())
			return nil
		}
	}
	return nodeError(n, "%q: want a network such as 10.0.0.0/8 or fd00::/8, or an address", n.Value)
}

// rule converts a rewrite entry. Replace is required, but for a rule that
// denies (or only lower-cases: it then keeps the match, "$0").
func (r *rewriteEntry) rule() (rewrite.Rule, error) {
	rule := rewrite.Rule{Match: r.Match, Lowercase: r.Lowercase, IfExists: r.IfExists, Deny: r.Deny}
	switch {
	case r.Replace != nil:
		rule.Replace = *r.Replace
	case r.Lowercase && !r.Deny:
		rule.Replace = "$0"
	case !r.Deny:
		return rule, errors.New("replace is missing (write replace: '' to delete what matches)")
	}
	if r.Error != nil && !r.Deny {
		return rule, errors.New("error is what a rule with deny: true sends")
	}
	e, err := r.Error.tftpError(gateway.ErrAccessViolation, "access violation")
	if err != nil {
		return rule, err
	}
	rule.Error = e
	// The rest (the regexp, the replacement, deny with other keys)
	// rewrite.New checks, naming the rule by index.
	return rule, nil
}

// ruleIndex finds "rule N: " in the errors of policy.New and rewrite.New.
var ruleIndex = regexp.MustCompile(`(?:rewrite: )?rule (\d+): `)

// policyKeys names the fields of policy.Rule by the file's keys.
var policyKeys = strings.NewReplacer(
	"RefuseOptions", "refuse_options",
	"MaxBlockSize", "max_blksize",
	"MaxWindowSize", "max_windowsize",
	"ClientRequestRate", "rrq_per_second_per_client",
)

// nameRules makes the errors of a list of rules name the file's entries:
// "FILE:LINE: policy[2]: ...". It leaves out those of a rule holding a
// value the decoder refused (reported already), and returns nil when
// none is left.
func (o *options) nameRules(list string, err error) error {
	if o.file == nil {
		return fmt.Errorf("%s: %w", list, err)
	}
	var out []string
	for line := range strings.SplitSeq(err.Error(), "\n") {
		if list == "policy" {
			line = policyKeys.Replace(line)
		}
		if m := ruleIndex.FindStringSubmatchIndex(line); m != nil {
			key := list + "[" + line[m[2]:m[3]] + "]"
			if o.file.failed[key] {
				continue // a value of the rule was refused, and reported
			}
			line = line[:m[0]] + o.file.where(key) + ": " + line[m[1]:]
		}
		out = append(out, line)
	}
	if len(out) == 0 {
		return nil
	}
	return errors.New(strings.Join(out, "\n"))
}

// flagName finds the flags named in an error of validate.
var flagName = regexp.MustCompile(`(^|[\s(])-([a-z][a-z0-9-]*[a-z0-9])`)

// nameKeys makes the errors of validate name the file's keys, and the
// line, where they are about a value the file set (and the command line
// did not): in such a line every flag not given on the command line is
// named by its key.
func (o *options) nameKeys(err error) error {
	if err == nil || o.file == nil || len(o.fromFile) == 0 {
		return err
	}
	var out []string
	for line := range strings.SplitSeq(err.Error(), "\n") {
		fromFile := false
		for _, m := range flagName.FindAllStringSubmatch(line, -1) {
			fromFile = fromFile || o.fromFile[m[2]]
		}
		if fromFile {
			line = flagName.ReplaceAllStringFunc(line, func(m string) string {
				sm := flagName.FindStringSubmatch(m)
				if k, ok := flagKeys[sm[2]]; ok && (o.fromFile[sm[2]] || !o.set[sm[2]]) {
					return sm[1] + k
				}
				return m
			})
			line = o.file.lineOf(line) + line
		}
		out = append(out, line)
	}
	return errors.New(strings.Join(out, "\n"))
}

// inFileOrder orders the lines of err by the line of the file they name,
// those naming none last, as they were.
func (f *configFile) inFileOrder(err error) error {
	if err == nil {
		return nil
	}
	lines := strings.Split(err.Error(), "\n")
	lineNo := func(l string) int {
		rest, ok := strings.CutPrefix(l, f.path+":")
		if !ok {
			return math.MaxInt
		}
		n, _, _ := strings.Cut(rest, ":")
		if v, err := strconv.Atoi(n); err == nil {
			return v
		}
		return math.MaxInt
	}
	slices.SortStableFunc(lines, func(a, b string) int { return cmp.Compare(lineNo(a), lineNo(b)) })
	return errors.New(strings.Join(lines, "\n"))
}

// lineOf returns "FILE:LINE: " for the first key of the file that msg
// names, or "FILE: ".
func (f *configFile) lineOf(msg string) string {
	best, bestAt := 0, len(msg)+1
	for _, key := range flagKeys {
		if i := strings.Index(msg, key); i >= 0 && f.lines[key] > 0 && (i < bestAt || i == bestAt && f.lines[key] > best) {
			best, bestAt = f.lines[key], i
		}
	}
	if best == 0 {
		return f.path + ": "
	}
	return fmt.Sprintf("%s:%d: ", f.path, best)
}
