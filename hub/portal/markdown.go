package portal

import (
	"bytes"

	"github.com/microcosm-cc/bluemonday"
	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/extension"
)

// md renders resolutions: CommonMark plus tables, strikethrough and
// autolinks. Raw HTML in the Markdown is dropped by goldmark's default
// (not unsafe) renderer, and the output is sanitised again regardless.
var md = goldmark.New(goldmark.WithExtensions(extension.GFM))

// sanitiser allows formatting, lists, code, tables and http(s)/mailto links
// only: no script, no style, no event handlers, no javascript: URLs, no
// images (they would load from anywhere and the CSP refuses them anyway).
var sanitiser = func() *bluemonday.Policy {
	p := bluemonday.NewPolicy()
	p.AllowElements("p", "br", "hr", "strong", "em", "b", "i", "del", "code", "pre", "blockquote",
		"ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "kbd")
	p.AllowAttrs("start").Matching(bluemonday.Integer).OnElements("ol")
	p.AllowAttrs("href").OnElements("a")
	p.AllowURLSchemes("http", "https", "mailto")
	p.RequireParseableURLs(true)
	p.RequireNoFollowOnLinks(true)
	p.AddTargetBlankToFullyQualifiedLinks(true)
	p.SkipElementsContent("script", "style")
	return p
}()

// RenderMarkdown turns a policy resolution into sanitised HTML.
func RenderMarkdown(src string) string {
	var buf bytes.Buffer
	if err := md.Convert([]byte(src), &buf); err != nil {
		// Convert only fails on writer errors; show the text escaped instead.
		return sanitiser.Sanitize("<p>" + bluemonday.StrictPolicy().Sanitize(src) + "</p>")
	}
	return sanitiser.Sanitize(buf.String())
}
