// xenbastion patch: the assembly must not touch memory past its slices.

package ssh

import (
	"syscall"
	"testing"
)

// TestChachaBounds runs the keystream and the MAC over slices that end
// where an unmapped page begins: a read or write past the end faults.
func TestChachaBounds(t *testing.T) {
	page := syscall.Getpagesize()
	mem, err := syscall.Mmap(-1, 0, 3*page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Skipf("mmap: %v", err)
	}
	defer syscall.Munmap(mem)
	if err := syscall.Mprotect(mem[2*page:], syscall.PROT_NONE); err != nil {
		t.Skipf("mprotect: %v", err)
	}
	end := 2 * page
	asmPaths(t, func(t *testing.T) {
		var key [32]byte
		var tag [16]byte
		for n := 0; n <= 2*page; n++ {
			b := mem[end-n : end : end]
			chachaXOR(b, b, &key, 7, 1)
			chachaXOR(b, b, &key, 7, 0)
			poly1305Sum(&tag, b, &key)
		}
	})
}
