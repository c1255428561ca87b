package rfb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/xenbastion/xenbastion/internal/testtool"
)

// listen serves RFB on a TCP port of 127.0.0.1 until the test ends, and
// returns the port. Each connection's Serve error is reported to the test.
func listen(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				if err := Serve(conn, "xenbastion test pattern"); err != nil && !errors.Is(err, net.ErrClosed) {
					t.Errorf("Serve: %v", err)
				}
			})
		}
	})
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	return l.Addr().(*net.TCPAddr).Port
}

// TestVNCSnapshot takes screenshots with vncsnapshot, a real VNC client, and
// checks that they show the test pattern.
func TestVNCSnapshot(t *testing.T) {
	t.Parallel()
	vncsnapshot := testtool.NeedTool(t, "vncsnapshot")
	tests := []struct {
		name  string
		count int // screenshots per connection
	}{
		{name: "one", count: 1},
		// From the second screenshot on, vncsnapshot sends an incremental
		// request, which stays pending, then a non-incremental one.
		{name: "two", count: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			port := listen(t)
			dir := t.TempDir()
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			// host::port names a TCP port; host:N would be display N, port
			// 5900+N.
			cmd := exec.CommandContext(ctx, vncsnapshot,
				"-allowblank", "-quality", "100",
				"-count", fmt.Sprint(tt.count), "-fps", "0",
				fmt.Sprintf("127.0.0.1::%d", port), filepath.Join(dir, "shot.jpg"))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", cmd, err, out)
			}
			files := []string{"shot.jpg"}
			if tt.count > 1 {
				// With -count, vncsnapshot numbers the files.
				files = nil
				for i := range tt.count {
					files = append(files, fmt.Sprintf("shot%05d.jpg", i))
				}
			}
			for _, f := range files {
				checkSnapshot(t, filepath.Join(dir, f))
			}
		})
	}
}

// checkSnapshot checks that the JPEG file shows the test pattern, in the
// middle of each bar and grey step, within the tolerance JPEG needs.
func checkSnapshot(t *testing.T, file string) {
	t.Helper()
	if err := CompareJPEGFile(file, 40); err != nil {
		t.Errorf("%s: %v", filepath.Base(file), err)
	}
}
