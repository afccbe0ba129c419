package vault

import (
	"fmt"
	"unicode/utf8"
)

// MaxNameLen is the longest secret name accepted.
const MaxNameLen = 128

// MaxValueLen is the largest secret value accepted, in bytes.
const MaxValueLen = 64 << 10

// ValidateName reports whether name is a valid secret name: an upper-case
// letter, then upper-case letters, digits or underscores, at most MaxNameLen
// characters (the product guide's [A-Z][A-Z0-9_]*).
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: name is empty", ErrInvalidName)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: name is %d characters, at most %d allowed", ErrInvalidName, len(name), MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '_'):
		default:
			return fmt.Errorf("%w: %q must match ^[A-Z][A-Z0-9_]*$ (upper-case letters, digits and underscores, starting with a letter)", ErrInvalidName, truncate(name, 40))
		}
	}
	return nil
}

// truncate shortens user input echoed in errors.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// Hint returns the value hint shown in place of a value: its first
// min(8, runes*2/5) runes followed by "...". So "your-token-here" gives
// "your-t...", and values of two runes or fewer reveal nothing.
func Hint(p Plaintext) string {
	s := string(p.b)
	n := min(8, utf8.RuneCountInString(s)*2/5)
	i := 0
	for range n {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return s[:i] + "..."
}
