// xenbastion patch: the assembly must not touch memory past its slices.

package ssh

import (
	"syscall"
	"testing"
)

// TestChachaBounds runs the keystream and the MAC over slices that end
// where an unmapped page begins: a read or write past the end faults.
func TestChachaBounds(t *testing.T) {
	mem := beforeUnmappedPage(t)
	end := len(mem)
	asmPaths(t, func(t *testing.T) {
		var key [32]byte
		var tag [16]byte
		for n := 0; n <= end; n++ {
			b := mem[end-n : end : end]
			chachaXOR(b, b, &key, 7, 1)
			chachaXOR(b, b, &key, 7, 0)
			poly1305Sum(&tag, b, &key)
		}
	})
}

// beforeUnmappedPage returns two pages of memory that an unmapped page
// follows: a slice that ends with it makes any read or write past its end
// fault. The test is skipped if the mapping cannot be made.
func beforeUnmappedPage(t *testing.T) []byte {
	page := syscall.Getpagesize()
	mem, err := syscall.Mmap(-1, 0, 3*page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Skipf("mmap: %v", err)
	}
	t.Cleanup(func() { syscall.Munmap(mem) })
	if err := syscall.Mprotect(mem[2*page:], syscall.PROT_NONE); err != nil {
		t.Skipf("mprotect: %v", err)
	}
	return mem[:2*page]
}
