package portal

import (
	"strings"
	"testing"
)

func TestRenderMarkdownSanitises(t *testing.T) {
	cases := map[string]struct{ in, must, mustNot string }{
		"formatting":      {"Open **Settings** and turn on `FileVault`.", "<strong>Settings</strong>", "<script"},
		"script tag":      {"Fix it <script>alert(1)</script> now", "Fix it", "<script"},
		"event handler":   {`<img src=x onerror="alert(1)">`, "", "onerror"},
		"js link":         {"[click](javascript:alert(1))", "click", "javascript:"},
		"js link html":    {`<a href="javascript:alert(1)">x</a>`, "", "javascript:"},
		"https link":      {"[guide](https://example.com/fix)", `href="https://example.com/fix"`, "javascript"},
		"data link":       {"[x](data:text/html;base64,PHNjcmlwdD4=)", "", "data:"},
		"style attribute": {`<p style="display:none">x</p>`, "", "style="},
		"iframe":          {`<iframe src="https://evil.example"></iframe>`, "", "<iframe"},
	}
	for name, c := range cases {
		out := RenderMarkdown(c.in)
		if c.must != "" && !strings.Contains(out, c.must) {
			t.Errorf("%s: %q lacks %q", name, out, c.must)
		}
		if strings.Contains(strings.ToLower(out), c.mustNot) {
			t.Errorf("%s: %q contains %q", name, out, c.mustNot)
		}
	}
	if out := RenderMarkdown("![x](https://tracker.example/p.png)"); strings.Contains(out, "<img") {
		t.Errorf("image kept: %q", out)
	}
}
