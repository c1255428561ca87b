package rfb

import (
	"fmt"
	"image"
	"image/jpeg"
	"os"
)

// Compare checks that img shows the test pattern, at the middle of each
// colour bar and grey step, each channel within tolerance (JPEG needs about
// 40). It is how tests check what a real VNC client saw.
func Compare(img image.Image, tolerance int) error {
	if got, want := img.Bounds(), image.Rect(0, 0, Width, Height); got != want {
		return fmt.Errorf("picture is %v, want %v", got, want)
	}
	barW := Width / Bars
	for _, y := range []int{StripY / 2, (StripY + Height) / 2} {
		for i := range Bars {
			x := i*barW + barW/2
			r, g, b, _ := img.At(x, y).RGBA()
			got := [3]int{int(r >> 8), int(g >> 8), int(b >> 8)}
			wr, wg, wb := Pattern(x, y)
			want := [3]int{int(wr), int(wg), int(wb)}
			for c := range 3 {
				if d := got[c] - want[c]; d < -tolerance || d > tolerance {
					return fmt.Errorf("pixel (%d, %d) = %v, want %v ± %d", x, y, got, want, tolerance)
				}
			}
		}
	}
	return nil
}

// CompareJPEGFile is Compare for a JPEG file, such as vncsnapshot writes.
func CompareJPEGFile(file string, tolerance int) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	img, err := jpeg.Decode(f)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return Compare(img, tolerance)
}
