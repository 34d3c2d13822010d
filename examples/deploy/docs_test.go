package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// commandLine finds a tftpgw or tftpbench command in a shell line of a
// code block: the program's name, then its arguments up to a shell
// operator, a redirection or a comment.
var commandLine = regexp.MustCompile(`(?:^|[\s;(]|then |if )(tftpgw|tftpbench) (-[^;|&#>]*)`)

// The commands the deployment docs tell operators to type use flags the
// binaries have.
func TestDocsCommandLinesUseExistingFlags(t *testing.T) {
	docs := []string{
		"README.md",
		filepath.Join(repoRoot(t), "docs", "fleet.md"),
		filepath.Join("anycast", "tftp-anycast-check"),
	}
	found := 0
	for _, doc := range docs {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		inCode := strings.HasSuffix(doc, "tftp-anycast-check") // a script: every line is code
		for n, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				inCode = !inCode
				continue
			}
			if !inCode {
				continue
			}
			for _, m := range commandLine.FindAllStringSubmatch(line, -1) {
				var args []string
				for _, f := range strings.Fields(m[2]) {
					if strings.HasPrefix(f, "$") || strings.HasPrefix(f, `"$`) || strings.HasPrefix(f, "${") {
						f = "VALUE" // a shell variable standing for a value
					}
					args = append(args, strings.Trim(f, `"'`))
				}
				found++
				if bad := checkArgs(t, m[1], args); len(bad) > 0 {
					t.Errorf("%s:%d: %s %s: %s", doc, n+1, m[1], strings.Join(args, " "), strings.Join(bad, "; "))
				}
			}
		}
	}
	if found < 4 {
		t.Errorf("found only %d command lines in %v", found, docs)
	}
}
