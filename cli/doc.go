// Package cli is Rotor's command line: `rotor serve` runs the server, and
// the other commands are clients of its control API, configured like the
// product guide's scripts by ROTOR_API_URL and ROTOR_API_KEY. One file per
// command; Run is the only entry point and never exits the process.
package cli
