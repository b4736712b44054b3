package geo

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/oschwald/geoip2-golang/v2"
)

// ErrNotFound is wrapped when an IP address has no record in any of the GeoIP databases.
var ErrNotFound = errors.New("geo: geoip: address not found")

// GeoIP looks IP addresses up in user-supplied MaxMind databases (.mmdb): a City (or Country) database and
// optionally an ASN (or ISP) database. Its answer is a prior for where a target may be (a starting point for
// probing, a cross-check of a measured location), never the verdict: GeoIP databases are often wrong for
// servers, and anycast addresses have no single location. Safe for concurrent use; Close when done.
type GeoIP struct {
	city, asn         *geoip2.Reader
	cityPath, asnPath string
}

// IPInfo is what the GeoIP databases say about an address. Fields are zero when the database has no value.
type IPInfo struct {
	IP          netip.Addr
	Network     netip.Prefix // the City database's network containing IP (the ASN one's if only it matched)
	City        string       // English name, e.g. "London"
	Country     string       // English name, e.g. "United Kingdom"
	CC          string       // ISO 3166-1 alpha-2, e.g. "GB"
	Continent   string       // continent code, e.g. "EU"
	Point                    // approximate coordinates, when HasLocation
	HasLocation bool         // the database has coordinates for IP
	AccuracyKm  float64      // radius around Point with 67 % confidence, in km (0: unknown)
	Anycast     bool         // the database flags the network as anycast
	ASN         uint         // autonomous system number (0: unknown or no ASN database)
	ASOrg       string       // autonomous system organisation, e.g. "Telstra Pty Ltd"
}

// OpenGeoIP opens the City database at cityPath (GeoIP2/GeoLite2 City or Country) and, unless asnPath is
// empty, the ASN database at asnPath (GeoLite2 ASN or GeoIP2 ISP). A missing, unreadable or corrupt file, or
// a database of the wrong type, is an error naming the path.
func OpenGeoIP(cityPath, asnPath string) (*GeoIP, error) {
	g := &GeoIP{cityPath: cityPath, asnPath: asnPath}
	var err error
	if g.city, err = openMMDB(cityPath, "City", func(r *geoip2.Reader) error {
		_, err := r.City(netip.IPv4Unspecified())
		return err
	}); err != nil {
		return nil, err
	}
	if asnPath != "" {
		if g.asn, err = openMMDB(asnPath, "ASN", func(r *geoip2.Reader) error {
			_, err := r.ASN(netip.IPv4Unspecified())
			return err
		}); err != nil {
			g.city.Close()
			return nil, err
		}
	}
	return g, nil
}

// openMMDB opens path and checks that probe (a lookup of the kind the database must answer) works.
func openMMDB(path, kind string, probe func(*geoip2.Reader) error) (r *geoip2.Reader, err error) {
	defer func() {
		if p := recover(); p != nil {
			r, err = nil, fmt.Errorf("geo: geoip: %s database %s: corrupt: %v", kind, path, p)
		}
	}()
	r, err = geoip2.Open(path)
	if err != nil {
		return nil, fmt.Errorf("geo: geoip: %s database %s: %w", kind, path, err)
	}
	if err := probe(r); err != nil {
		r.Close()
		return nil, fmt.Errorf("geo: geoip: %s database %s (type %q): %w", kind, path, r.Metadata().DatabaseType, err)
	}
	return r, nil
}

// Lookup returns what the databases know about ip (IPv4-mapped IPv6 addresses are looked up as IPv4). An
// address in neither database wraps ErrNotFound; a failed lookup (a corrupt record) is an error naming the
// database's path.
func (g *GeoIP) Lookup(ip netip.Addr) (info IPInfo, err error) {
	if !ip.IsValid() {
		return IPInfo{}, fmt.Errorf("geo: geoip: lookup of an invalid address")
	}
	ip = ip.Unmap()
	info.IP = ip
	defer func() {
		if p := recover(); p != nil {
			info, err = IPInfo{}, fmt.Errorf("geo: geoip: lookup %s: corrupt database: %v", ip, p)
		}
	}()
	found := false
	c, err := g.city.City(ip)
	if err != nil {
		return IPInfo{}, fmt.Errorf("geo: geoip: lookup %s in %s: %w", ip, g.cityPath, err)
	}
	if c.HasData() {
		found = true
		info.Network = c.Traits.Network
		info.City = c.City.Names.English
		info.Country = c.Country.Names.English
		info.CC = c.Country.ISOCode
		info.Continent = c.Continent.Code
		info.Anycast = c.Traits.IsAnycast
		if c.Location.HasCoordinates() {
			info.HasLocation = true
			info.Point = Point{Lat: *c.Location.Latitude, Lon: *c.Location.Longitude}
			info.AccuracyKm = float64(c.Location.AccuracyRadius)
		}
	}
	if g.asn != nil {
		a, err := g.asn.ASN(ip)
		if err != nil {
			return IPInfo{}, fmt.Errorf("geo: geoip: lookup %s in %s: %w", ip, g.asnPath, err)
		}
		if a.HasData() {
			if !found {
				info.Network = a.Network
			}
			found = true
			info.ASN = a.AutonomousSystemNumber
			info.ASOrg = a.AutonomousSystemOrganization
		}
	}
	if !found {
		return IPInfo{}, fmt.Errorf("geo: geoip: %s: %w", ip, ErrNotFound)
	}
	return info, nil
}

// Close releases the databases.
func (g *GeoIP) Close() error {
	var errs []error
	if g.city != nil {
		errs = append(errs, g.city.Close())
	}
	if g.asn != nil {
		errs = append(errs, g.asn.Close())
	}
	return errors.Join(errs...)
}
