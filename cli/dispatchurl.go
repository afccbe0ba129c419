package cli

import (
	"net"
	"net/url"
	"strings"
)

// checkDispatchProxyURL refuses a dispatch proxy the dispatch token would
// reach in clear. The token lets its holder act as the dispatcher on every
// proxy started with it: name any workspace and actor, and have that
// workspace's secrets, callback secret and signatures placed into requests
// of its choosing. So it travels over TLS, or over loopback only.
func checkDispatchProxyURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return settingErr(flagDispatchProxyURL, "must be an https:// URL (or http:// on loopback)")
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
			return nil
		}
	}
	return settingErr(flagDispatchProxyURL, "use an https:// proxy listener (http:// only on loopback): the dispatch token, sent to it in the clear, lets its holder place any workspace's secrets")
}
