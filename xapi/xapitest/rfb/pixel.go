package rfb

import (
	"encoding/binary"
	"fmt"
	"sync"
)

// pixelFormat is the PIXEL_FORMAT structure of RFC 6143 section 7.4.
type pixelFormat struct {
	bitsPerPixel uint8
	depth        uint8
	bigEndian    bool
	trueColour   bool
	redMax       uint16
	greenMax     uint16
	blueMax      uint16
	redShift     uint8
	greenShift   uint8
	blueShift    uint8
}

// serverFormat is the pixel format announced in ServerInit: 32 bits per
// pixel, depth 24, little-endian, true colour with 8 bits per channel.
var serverFormat = pixelFormat{
	bitsPerPixel: 32,
	depth:        24,
	trueColour:   true,
	redMax:       255,
	greenMax:     255,
	blueMax:      255,
	redShift:     16,
	greenShift:   8,
	blueShift:    0,
}

// pixelFormatLen is the length of PIXEL_FORMAT on the wire, padding included.
const pixelFormatLen = 16

func parsePixelFormat(b []byte) pixelFormat {
	return pixelFormat{
		bitsPerPixel: b[0],
		depth:        b[1],
		bigEndian:    b[2] != 0,
		trueColour:   b[3] != 0,
		redMax:       binary.BigEndian.Uint16(b[4:]),
		greenMax:     binary.BigEndian.Uint16(b[6:]),
		blueMax:      binary.BigEndian.Uint16(b[8:]),
		redShift:     b[10],
		greenShift:   b[11],
		blueShift:    b[12],
	}
}

func (pf pixelFormat) appendTo(b []byte) []byte {
	b = append(b, pf.bitsPerPixel, pf.depth, boolByte(pf.bigEndian), boolByte(pf.trueColour))
	b = binary.BigEndian.AppendUint16(b, pf.redMax)
	b = binary.BigEndian.AppendUint16(b, pf.greenMax)
	b = binary.BigEndian.AppendUint16(b, pf.blueMax)
	return append(b, pf.redShift, pf.greenShift, pf.blueShift, 0, 0, 0)
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// check reports whether Serve can send pixels in pf. Any true-colour format
// of 8, 16 or 32 bits per pixel is fine, whatever its maxima and shifts;
// colour maps are not supported.
func (pf pixelFormat) check() error {
	switch pf.bitsPerPixel {
	case 8, 16, 32:
	default:
		return fmt.Errorf("%d bits per pixel (want 8, 16 or 32)", pf.bitsPerPixel)
	}
	if !pf.trueColour {
		return fmt.Errorf("colour map pixel format not supported")
	}
	return nil
}

// bytesPerPixel returns the size of one pixel on the wire.
func (pf pixelFormat) bytesPerPixel() int { return int(pf.bitsPerPixel) / 8 }

// key returns pf with the fields that do not change the encoding zeroed, for
// use as a cache key.
func (pf pixelFormat) key() pixelFormat {
	pf.depth = 0
	if pf.bitsPerPixel == 8 {
		pf.bigEndian = false
	}
	return pf
}

// encode converts rgb, pixels of three bytes as made by frameRGB, to pf,
// which must have passed check.
func (pf pixelFormat) encode(rgb []byte) []byte {
	// Each table maps an 8-bit channel value to its scaled and shifted bits,
	// so a pixel is three look-ups and two ORs.
	var rt, gt, bt [256]uint32
	for v := range uint32(256) {
		rt[v] = scale(v, pf.redMax) << pf.redShift
		gt[v] = scale(v, pf.greenMax) << pf.greenShift
		bt[v] = scale(v, pf.blueMax) << pf.blueShift
	}
	n := len(rgb) / 3
	out := make([]byte, n*pf.bytesPerPixel())
	switch {
	case pf.bitsPerPixel == 8:
		for i := range n {
			out[i] = byte(rt[rgb[3*i]] | gt[rgb[3*i+1]] | bt[rgb[3*i+2]])
		}
	case pf.bitsPerPixel == 16 && pf.bigEndian:
		for i := range n {
			binary.BigEndian.PutUint16(out[2*i:], uint16(rt[rgb[3*i]]|gt[rgb[3*i+1]]|bt[rgb[3*i+2]]))
		}
	case pf.bitsPerPixel == 16:
		for i := range n {
			binary.LittleEndian.PutUint16(out[2*i:], uint16(rt[rgb[3*i]]|gt[rgb[3*i+1]]|bt[rgb[3*i+2]]))
		}
	case pf.bigEndian:
		for i := range n {
			binary.BigEndian.PutUint32(out[4*i:], rt[rgb[3*i]]|gt[rgb[3*i+1]]|bt[rgb[3*i+2]])
		}
	default:
		for i := range n {
			binary.LittleEndian.PutUint32(out[4*i:], rt[rgb[3*i]]|gt[rgb[3*i+1]]|bt[rgb[3*i+2]])
		}
	}
	return out
}

// scale maps the 8-bit channel value v to 0..max, rounding to nearest.
func scale(v uint32, max uint16) uint32 {
	return (v*uint32(max) + 127) / 255
}

// maxCachedFrames bounds the frames cache: a client may ask for any of
// billions of formats, but real ones use a handful.
const maxCachedFrames = 8

// frames caches the test pattern encoded in the formats clients asked for.
// The slices are shared by all connections and never written after they are
// made.
var frames struct {
	sync.Mutex
	m map[pixelFormat][]byte // guarded by the mutex
}

// frame returns the test pattern encoded in pf, which must have passed
// check: Width*Height pixels, row by row.
func frame(pf pixelFormat) []byte {
	k := pf.key()
	frames.Lock()
	fb, ok := frames.m[k]
	frames.Unlock()
	if ok {
		return fb
	}
	fb = pf.encode(frameRGB())
	frames.Lock()
	defer frames.Unlock()
	if frames.m == nil {
		frames.m = make(map[pixelFormat][]byte)
	}
	if len(frames.m) < maxCachedFrames {
		frames.m[k] = fb
	}
	return fb
}
