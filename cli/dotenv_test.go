package cli

import (
	"strings"
	"testing"
)

func TestParseDotenv(t *testing.T) {
	in := `# a comment
NOTIFY_TOKEN=plain-value
export SLACK_BOT_TOKEN="xoxb-1\n2 \"q\" \\"
STRIPE_WEBHOOK_SECRET='whsec_$NOT#expanded'
WITH_COMMENT=abc # trailing comment
EMPTY=
  SPACED = spaced value  
MULTI="line one
line two"
HASH_IN_VALUE=a#b
`
	vals, order, err := parseDotenv(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"NOTIFY_TOKEN": "plain-value", "SLACK_BOT_TOKEN": "xoxb-1\n2 \"q\" \\", "STRIPE_WEBHOOK_SECRET": "whsec_$NOT#expanded",
		"WITH_COMMENT": "abc", "EMPTY": "", "SPACED": "spaced value", "MULTI": "line one\nline two", "HASH_IN_VALUE": "a#b",
	}
	for k, v := range want {
		if vals[k] != v {
			t.Errorf("%s = %q, want %q", k, vals[k], v)
		}
	}
	if strings.Join(order, ",") != "NOTIFY_TOKEN,SLACK_BOT_TOKEN,STRIPE_WEBHOOK_SECRET,WITH_COMMENT,EMPTY,SPACED,MULTI,HASH_IN_VALUE" {
		t.Errorf("order %v", order)
	}
	for _, bad := range []string{"NOVALUE\n", "A='open\n", "B=\"open\n", "=x\n"} {
		if _, _, err := parseDotenv(strings.NewReader(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func FuzzParseDotenv(f *testing.F) {
	for _, s := range []string{"A=b\n", "export A=\"x\\ny\"\n", "A='x'\n# c\nB=y # z\n", "A=\"a\nb\"\n", "A=\"\\"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		vals, order, err := parseDotenv(strings.NewReader(s))
		if err != nil {
			return
		}
		if len(vals) != len(order) {
			t.Fatalf("%d values, %d names", len(vals), len(order))
		}
	})
}

func TestInterspersed(t *testing.T) {
	app := newApp(nil, nil)
	cases := map[string]string{
		"rotor secrets create NAME --from-env VAR": "rotor secrets create --from-env VAR NAME",
		"rotor secrets delete NAME --yes":          "rotor secrets delete --yes NAME",
		"rotor secrets create --from-env=VAR NAME": "rotor secrets create --from-env=VAR NAME",
		"rotor jobs enqueue q --payload {} --wait": "rotor jobs enqueue --payload {} --wait q",
		"rotor serve --api-addr 127.0.0.1:0":       "rotor serve --api-addr 127.0.0.1:0",
		"rotor secrets":                            "rotor secrets",
		"rotor keys revoke key_1 -- --not-a-flag":  "rotor keys revoke key_1 -- --not-a-flag",
	}
	for in, want := range cases {
		if got := strings.Join(interspersed(app, strings.Fields(in)), " "); got != want {
			t.Errorf("%q -> %q, want %q", in, got, want)
		}
	}
}

// TestShippedConfigsLoad: every YAML config in configs/ uses only known keys.
func TestShippedConfigsLoad(t *testing.T) {
	for _, f := range []string{"rotor.example.yaml", "sidecar.yaml", "gateway.yaml"} {
		if err := checkConfigKeys("../configs/"+f, append(serveFlags(), proxyFlags()...)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
