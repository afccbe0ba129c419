package template

import "testing"

func TestURLShape(t *testing.T) {
	for in, want := range map[string]string{
		"https://h/p/${{ secrets.A }}?t=%24%7B%7B+secrets.B+%7D%7D": "https://h/p/x?t=x",
		"https://h/${{ env.X }}":                                    "https://h/${{ env.X }}",
		"https://h/${{ secrets.lower }}":                            "",
	} {
		if got := URLShape(in); got != want {
			t.Errorf("URLShape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHostPart(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:${{ secrets.P }}@h.example:8443/p?q#f": "h.example:8443",
		"https://${{ secrets.H }}/p":                         "${{ secrets.H }}",
		"http://h?x=//y":                                     "h",
		"no-scheme":                                          "",
	} {
		if got := HostPart(in); got != want {
			t.Errorf("HostPart(%q) = %q, want %q", in, got, want)
		}
	}
}
