package portal

import "net/http"

// message is a helpful page: what happened, in plain words, and what to do.
type message struct {
	Title string
	Text  string
	// Next, if set, is where "Sign in" returns to.
	Next string
	// OfferSignIn shows a sign-in button (when sign-in is configured).
	OfferSignIn bool
}

var (
	msgBadID = message{Title: "This link is not complete",
		Text: "The address does not contain a valid device code. Open the link again from your device or from the message you received, or sign in to see your devices.", OfferSignIn: true}
	msgUnknownDevice = message{Title: "We could not find this device",
		Text: "Either this device is not registered with the compliance service, or it is registered to someone else. If you just set it up, wait a few minutes and try again.", OfferSignIn: true}
	msgLinkExpired = message{Title: "This link has expired",
		Text: "Links to this page only work for a limited time. Open a fresh link from your device, or sign in with your work account.", OfferSignIn: true}
	msgLinkInvalid = message{Title: "This link does not work",
		Text: "The link was changed or copied incompletely. Open it again from your device, or sign in with your work account.", OfferSignIn: true}
	msgNeedLink = message{Title: "Open this page from your device",
		Text: "To see a device, open the link shown by the compliance app on that device."}
	msgNoSignIn = message{Title: "Sign-in is not set up",
		Text: "Your organisation has not turned on sign-in for this page. Open the link shown on your device instead."}
	msgIdPDown = message{Title: "Sign-in is not available right now",
		Text: "We could not reach the sign-in service. Please try again in a few minutes."}
	msgSignInFailed = message{Title: "Sign-in did not complete",
		Text: "Something went wrong while signing you in (it may have taken too long, or been opened in another browser). Please try again.", OfferSignIn: true}
	msgUnavailable = message{Title: "Please try again shortly",
		Text: "The compliance service cannot answer right now. Nothing is wrong with your device because of this."}
	msgBadOrigin = message{Title: "Request refused",
		Text: "This request did not come from this page. Go back to the page and press the button there."}
	msgSignedOut = message{Title: "You are signed out",
		Text: "You can close this window."}
)

func (p *Pages) message(w http.ResponseWriter, r *http.Request, code int, m message) {
	if m.Next == "" {
		m.Next = r.URL.Path
		if m.Next != "/remediate" && m.Next != "/enroll" {
			m.Next = "/remediate"
		}
	}
	_, in := p.signedIn(r)
	p.render(w, code, "message", page{Title: m.Title, Msg: m, SignedIn: in})
}
