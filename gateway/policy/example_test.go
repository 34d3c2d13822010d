package policy_test

import (
	"fmt"
	"net/netip"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/policy"
)

// Serve the data centre's networks, older switches without windowsize,
// and nobody else.
func Example() {
	p, err := policy.New(gateway.Limits{}, []policy.Rule{
		{Clients: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Access: policy.Allow},
		{Clients: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}, RefuseOptions: []string{"windowsize"}},
		{Clients: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}, Access: policy.Drop},
	})
	if err != nil {
		panic(err)
	}
	srv := &gateway.Server{Admit: p.Admit}
	_ = srv

	for _, c := range []string{"10.1.0.5", "10.9.0.5", "192.0.2.1"} {
		d := p.Decide(netip.MustParseAddr(c))
		if d.Action == gateway.AdmitDrop {
			fmt.Println(c, "dropped")
			continue
		}
		fmt.Println(c, "served, refusing", d.Limits.RefuseOptions)
	}
	// Output:
	// 10.1.0.5 served, refusing []
	// 10.9.0.5 served, refusing [windowsize]
	// 192.0.2.1 dropped
}
