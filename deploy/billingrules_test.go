package deploy_test

import (
	"os"
	"testing"

	"github.com/passerelle/passerelle/transforms"
)

// TestBillingRulesExample: the example rule table shipped in deploy/ is the table the daemon applies
// without one, so copying it changes nothing until finance edits it.
func TestBillingRulesExample(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("billing-rules.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rules, err := transforms.ParseBillingRules(data)
	if err != nil {
		t.Fatalf("billing-rules.example.yaml: %v", err)
	}
	if got, want := rules.String(), transforms.DefaultBillingRules().String(); got != want {
		t.Errorf("billing-rules.example.yaml is not the default table:\ngot:\n%s\nwant:\n%s", got, want)
	}
}
