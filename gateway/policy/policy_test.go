package policy_test

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/policy"
)

func prefixes(s ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(s))
	for i, p := range s {
		out[i] = netip.MustParsePrefix(p)
	}
	return out
}

// issueExample is the policy of the configuration example: the data
// centre's networks allowed, one of them with a narrower protocol, all
// others dropped.
func issueExample(t *testing.T) *policy.Policy {
	t.Helper()
	p, err := policy.New(gateway.Limits{MaxSessionsPerClient: 8, RefuseOptions: []string{"timeout"}}, []policy.Rule{
		{Clients: prefixes("10.0.0.0/8", "fd00::/8"), Access: policy.Allow},
		{Clients: prefixes("10.9.0.0/16"), RefuseOptions: []string{"windowsize"}, MaxBlockSize: 1024, ClientRequestRate: 2},
		{Clients: prefixes("0.0.0.0/0", "::/0"), Access: policy.Drop},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFirstMatchingRuleDecidesEach: for access and each limit, the first
// matching rule that sets it decides; the defaults fill the rest.
func TestFirstMatchingRuleDecidesEach(t *testing.T) {
	p := issueExample(t)
	for _, tc := range []struct {
		client string
		want   gateway.Admission
	}{
		{"10.1.2.3", gateway.Admission{Limits: &gateway.Limits{MaxSessionsPerClient: 8, RefuseOptions: []string{"timeout"}}}},
		{"10.9.0.7", gateway.Admission{Limits: &gateway.Limits{MaxSessionsPerClient: 8, RefuseOptions: []string{"timeout", "windowsize"}, MaxBlockSize: 1024, ClientRequestRate: 2}}},
		{"::ffff:10.9.0.7", gateway.Admission{Limits: &gateway.Limits{MaxSessionsPerClient: 8, RefuseOptions: []string{"timeout", "windowsize"}, MaxBlockSize: 1024, ClientRequestRate: 2}}},
		{"fd00::1", gateway.Admission{Limits: &gateway.Limits{MaxSessionsPerClient: 8, RefuseOptions: []string{"timeout"}}}},
		{"192.0.2.1", gateway.Admission{Action: gateway.AdmitDrop}},
		{"2001:db8::1", gateway.Admission{Action: gateway.AdmitDrop}},
	} {
		for range 2 { // computed, then memoised
			got := p.Decide(netip.MustParseAddr(tc.client))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s: %+v (limits %+v), want %+v (limits %+v)", tc.client, got, got.Limits, tc.want, tc.want.Limits)
			}
		}
	}
}

// TestRefuseRuleSendsItsError: a refusing rule's error, or ERROR 2 by
// default; a client no rule decides about is allowed.
func TestRefuseRuleSendsItsError(t *testing.T) {
	custom := &gateway.Error{Code: gateway.ErrAccessViolation, Message: "not on this network"}
	p, err := policy.New(gateway.Limits{}, []policy.Rule{
		{Clients: prefixes("192.0.2.0/24"), Access: policy.Refuse, Error: custom},
		{Clients: prefixes("198.51.100.0/24"), Access: policy.Refuse},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Decide(netip.MustParseAddr("192.0.2.9")); got.Action != gateway.AdmitRefuse || got.Error != custom {
		t.Errorf("192.0.2.9: %+v", got)
	}
	if got := p.Decide(netip.MustParseAddr("198.51.100.9")); got.Action != gateway.AdmitRefuse || got.Error != nil {
		t.Errorf("198.51.100.9: %+v", got)
	}
	if got := p.Decide(netip.MustParseAddr("203.0.113.1")); got.Action != gateway.AdmitAccept {
		t.Errorf("203.0.113.1: %+v", got)
	}
}

// TestManyRules: past 64 rules (no memo) the decisions are the same.
func TestManyRules(t *testing.T) {
	var rules []policy.Rule
	for i := range 100 {
		rules = append(rules, policy.Rule{Clients: prefixes(fmt.Sprintf("10.%d.0.0/16", i)), MaxBlockSize: 512 + i})
	}
	rules = append(rules, policy.Rule{Clients: prefixes("0.0.0.0/0"), Access: policy.Refuse})
	p, err := policy.New(gateway.Limits{}, rules)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Decide(netip.MustParseAddr("10.99.1.1")); got.Action != gateway.AdmitRefuse {
		t.Errorf("10.99.1.1: %+v", got)
	}
	p2, _ := policy.New(gateway.Limits{}, rules[:100])
	if got := p2.Decide(netip.MustParseAddr("10.99.1.1")); got.Limits == nil || got.Limits.MaxBlockSize != 611 {
		t.Errorf("10.99.1.1: %+v", got)
	}
}

// TestDecideAllocatesNothingOnceSeen: the listener's goroutine pays no
// allocation per request for a policy.
func TestDecideAllocatesNothingOnceSeen(t *testing.T) {
	p := issueExample(t)
	addr := netip.MustParseAddr("10.9.3.4")
	p.Decide(addr)
	if n := testing.AllocsPerRun(100, func() { p.Decide(addr) }); n != 0 {
		t.Errorf("%v allocations per decision", n)
	}
}

// TestNewNamesTheBadRule: each error names its rule.
func TestNewNamesTheBadRule(t *testing.T) {
	for _, tc := range []struct {
		rule policy.Rule
		want string
	}{
		{policy.Rule{}, "rule 0: no clients"},
		{policy.Rule{Clients: prefixes("10.0.0.0/8"), Access: policy.Allow, Error: &gateway.Error{}}, "rule 0: an error is only sent by a rule that refuses"},
		{policy.Rule{Clients: prefixes("10.0.0.0/8"), RefuseOptions: []string{"multicast"}}, `rule 0: RefuseOptions "multicast"`},
		{policy.Rule{Clients: prefixes("10.0.0.0/8"), MaxBlockSize: 70000}, "rule 0: MaxBlockSize 70000"},
		{policy.Rule{Clients: []netip.Prefix{{}}}, "rule 0: client network invalid Prefix is not valid"},
		{policy.Rule{Clients: prefixes("10.0.0.0/8"), Access: policy.Refuse, Error: &gateway.Error{Code: 9}}, "rule 0: error 9"},
	} {
		_, err := policy.New(gateway.Limits{}, []policy.Rule{tc.rule})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.rule, err, tc.want)
		}
	}
}

// BenchmarkDecide is the cost of a decision on the listener's goroutine.
func BenchmarkDecide(b *testing.B) {
	p := issueExample(&testing.T{})
	addr := netip.MustParseAddr("10.9.3.4")
	b.ReportAllocs()
	for b.Loop() {
		p.Decide(addr)
	}
}

// TestUploadsPerNetwork: a write request is decided by Access first, then
// by the first matching rule that sets Uploads; reads never by Uploads.
func TestUploadsPerNetwork(t *testing.T) {
	p, err := policy.New(gateway.Limits{}, []policy.Rule{
		{Clients: prefixes("10.1.0.0/16"), Uploads: policy.Allow},
		{Clients: prefixes("10.2.0.0/16"), Uploads: policy.Drop},
		{Clients: prefixes("10.0.0.0/8"), Access: policy.Allow, Uploads: policy.Refuse},
		{Clients: prefixes("192.0.2.0/24"), Access: policy.Refuse},
	})
	if err != nil {
		t.Fatal(err)
	}
	refused := gateway.Admission{Action: gateway.AdmitRefuse, Error: &gateway.Error{Code: gateway.ErrAccessViolation, Message: "uploads not allowed"}}
	for _, tc := range []struct {
		client string
		write  bool
		want   gateway.AdmitAction
		err    *gateway.Error
	}{
		{"10.1.0.5", true, gateway.AdmitAccept, nil},
		{"10.2.0.5", true, gateway.AdmitDrop, nil},
		{"10.3.0.5", true, gateway.AdmitRefuse, refused.Error},
		{"10.3.0.5", false, gateway.AdmitAccept, nil},
		{"192.0.2.1", true, gateway.AdmitRefuse, nil}, // Access refuses every request
		{"198.51.100.1", true, gateway.AdmitAccept, nil},
	} {
		for range 2 { // computed, then memoised
			got := p.Admit(gateway.Arrival{Client: netip.AddrPortFrom(netip.MustParseAddr(tc.client), 1000), Write: tc.write})
			if got.Action != tc.want || !reflect.DeepEqual(got.Error, tc.err) {
				t.Errorf("%s write=%v: %v %v, want %v %v", tc.client, tc.write, got.Action, got.Error, tc.want, tc.err)
			}
		}
	}
	if _, err := policy.New(gateway.Limits{}, []policy.Rule{{Clients: prefixes("0.0.0.0/0"), Uploads: 9}}); err == nil {
		t.Error("Uploads 9 accepted")
	}
}
