// Package memlock hardens the process that holds key material: it turns off
// core dumps (a dump would write every key and cached secret to disk) and
// locks key buffers into RAM so they are not swapped out. Both are best
// effort where the platform allows; elsewhere they report ErrUnsupported.
package memlock
