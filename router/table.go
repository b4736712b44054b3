package router

// Place returns where a fetch request of app that entered at ingress runs when it is not held back as the
// baseline and not spread: the decision's best PoP, or after failover and drains the next candidate within
// budget, or the ingress. It is the answer a proxy's lookup table holds for the application (router/proxysync);
// the proxy applies the baseline itself (baseline.go) and does not spread. Place reads only memory and counts
// nothing in the router's metrics or rates.
func (r *Router) Place(app, ingress string) (res Result) {
	v := r.view.Load()
	v.pops.spell(&res, ingress, r.decide(v, app, ingress, "", KindFetch, true))
	return res
}

// Generation returns a number that changes whenever what Route reads changes: a reload's snapshot, a fleet
// refresh, a new ingress. Time alone also changes Route's answers (a decision's expiry, staleness after
// Config.MaxAge): a caller tracking the answers re-reads them periodically as well.
func (r *Router) Generation() uint64 { return r.gen.Load() }

// publishLocked stores v as the view Route reads and counts the publication. The caller holds popMu.
func (r *Router) publishLocked(v *view) {
	r.view.Store(v)
	r.gen.Add(1)
}
