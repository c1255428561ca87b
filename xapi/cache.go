package xapi

import (
	"slices"
	"sync"
	"time"
)

// defaultCacheTTL is how long a name or UUID lookup is reused. Short: a
// VM's name, tags and power state decide access and error messages, and
// may change.
const defaultCacheTTL = 10 * time.Second

// lookupCache keeps what opening a console reads from XAPI, so that a warm
// open costs no XAPI call: VM lookups by target for a short TTL, and
// console records until a dial says they are stale (a reboot or migration
// makes consoles anew, often on another host).
type lookupCache struct {
	ttl time.Duration // 0: off

	mu       sync.Mutex // guards the maps
	finds    map[string]cachedFind
	consoles map[string]Console // by console ref
}

type cachedFind struct {
	vms []VM
	at  time.Time
}

func newLookupCache(ttl time.Duration) *lookupCache {
	return &lookupCache{ttl: ttl, finds: map[string]cachedFind{}, consoles: map[string]Console{}}
}

func (lc *lookupCache) find(target string, now time.Time) ([]VM, bool) {
	if lc.ttl <= 0 {
		return nil, false
	}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	f, ok := lc.finds[target]
	if !ok || now.Sub(f.at) >= lc.ttl {
		delete(lc.finds, target)
		return nil, false
	}
	return slices.Clone(f.vms), true
}

func (lc *lookupCache) putFind(target string, vms []VM, now time.Time) {
	if lc.ttl <= 0 {
		return
	}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if len(lc.finds) > 10000 { // bounded: drop everything rather than grow
		clear(lc.finds)
	}
	lc.finds[target] = cachedFind{vms: slices.Clone(vms), at: now}
}

func (lc *lookupCache) console(ref string) (Console, bool) {
	if lc.ttl <= 0 {
		return Console{}, false
	}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	c, ok := lc.consoles[ref]
	return c, ok
}

func (lc *lookupCache) putConsole(c Console) {
	if lc.ttl <= 0 {
		return
	}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if len(lc.consoles) > 10000 {
		clear(lc.consoles)
	}
	lc.consoles[c.Ref] = c
}

// forget drops everything cached about vm: its consoles, and every lookup
// that returned it.
func (lc *lookupCache) forget(vm VM) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	for _, ref := range vm.consoleRefs {
		delete(lc.consoles, ref)
	}
	for _, con := range vm.Consoles {
		delete(lc.consoles, con.Ref)
	}
	for target, f := range lc.finds {
		if slices.ContainsFunc(f.vms, func(v VM) bool { return v.Ref == vm.Ref }) {
			delete(lc.finds, target)
		}
	}
}
