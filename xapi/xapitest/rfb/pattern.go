package rfb

import "sync"

// The frame buffer's size in pixels.
const (
	Width  = 640
	Height = 480
)

// Layout of the test pattern.
const (
	// Bars is the number of colour bars, and of grey steps, across the
	// screen. Each is Width/Bars pixels wide.
	Bars = 8
	// StripY is the first row of the grey strip at the bottom.
	StripY = Height * 4 / 5
)

// barColours are the colour bars from left to right, in order of falling
// luminance as on a broadcast test card.
var barColours = [Bars][3]uint8{
	{255, 255, 255}, // white
	{255, 255, 0},   // yellow
	{0, 255, 255},   // cyan
	{0, 255, 0},     // green
	{255, 0, 255},   // magenta
	{255, 0, 0},     // red
	{0, 0, 255},     // blue
	{0, 0, 0},       // black
}

// Pattern returns the colour of the test pattern at (x, y).
//
// The pattern is made of flat areas at least 80x96 pixels large, so that it
// survives lossy compression such as the JPEG that vncsnapshot writes. Above
// StripY it shows Bars vertical bars of full-intensity white, yellow, cyan,
// green, magenta, red, blue and black, left to right. From StripY down it
// shows Bars grey steps rising from black at the left to white at the right,
// so a picture that is upside down or mirrored is told apart from the right
// one. Points outside the frame buffer are black.
func Pattern(x, y int) (r, g, b uint8) {
	if x < 0 || x >= Width || y < 0 || y >= Height {
		return 0, 0, 0
	}
	i := x * Bars / Width
	if y >= StripY {
		v := uint8(i * 255 / (Bars - 1))
		return v, v, v
	}
	c := barColours[i]
	return c[0], c[1], c[2]
}

// frameRGB returns the test pattern as Width*Height pixels of three bytes,
// red, green and blue, row by row. It is computed once and never changed.
var frameRGB = sync.OnceValue(func() []byte {
	rgb := make([]byte, 0, Width*Height*3)
	for y := range Height {
		for x := range Width {
			r, g, b := Pattern(x, y)
			rgb = append(rgb, r, g, b)
		}
	}
	return rgb
})
