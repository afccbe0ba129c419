package cli

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// parseDotenv reads .env syntax: KEY=value lines, optional "export ",
// comments (# at line start, or after an unquoted value with a space
// before it), single quotes (literal), double quotes (with \n \r \t \" \\
// escapes, and spanning lines). It returns the names in file order.
func parseDotenv(r io.Reader) (map[string]string, []string, error) {
	vals := map[string]string{}
	var order []string
	br := bufio.NewReader(r)
	lineNo := 0
	readLine := func() (string, bool, error) {
		s, err := br.ReadString('\n')
		if err == io.EOF {
			if s == "" {
				return "", false, nil
			}
			err = nil
		}
		lineNo++
		return strings.TrimRight(s, "\r\n"), true, err
	}
	for {
		line, ok, err := readLine()
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			break
		}
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		t = strings.TrimPrefix(t, "export ")
		key, rest, found := strings.Cut(t, "=")
		key = strings.TrimSpace(key)
		if !found || key == "" || strings.ContainsAny(key, " \t\"'") {
			return nil, nil, fmt.Errorf(".env line %d: expected KEY=value", lineNo)
		}
		rest = strings.TrimLeft(rest, " \t")
		var val string
		switch {
		case strings.HasPrefix(rest, "'"):
			end := strings.IndexByte(rest[1:], '\'')
			if end < 0 {
				return nil, nil, fmt.Errorf(".env line %d: unterminated single quote", lineNo)
			}
			val = rest[1 : 1+end]
		case strings.HasPrefix(rest, `"`):
			var sb strings.Builder
			s := rest[1:]
			start := lineNo
			for closed := false; !closed; {
				for i := 0; i < len(s); i++ {
					c := s[i]
					if c == '\\' && i+1 < len(s) {
						i++
						switch s[i] {
						case 'n':
							sb.WriteByte('\n')
						case 'r':
							sb.WriteByte('\r')
						case 't':
							sb.WriteByte('\t')
						default:
							sb.WriteByte(s[i])
						}
						continue
					}
					if c == '"' {
						closed = true
						break
					}
					sb.WriteByte(c)
				}
				if !closed {
					next, ok, err := readLine()
					if err != nil {
						return nil, nil, err
					}
					if !ok {
						return nil, nil, fmt.Errorf(".env line %d: unterminated double quote", start)
					}
					sb.WriteByte('\n')
					s = next
				}
			}
			val = sb.String()
		default:
			if i := strings.Index(rest, " #"); i >= 0 {
				rest = rest[:i]
			}
			val = strings.TrimSpace(rest)
		}
		if _, dup := vals[key]; !dup {
			order = append(order, key)
		}
		vals[key] = val
	}
	return vals, order, nil
}
