#!/usr/bin/perl
# Writes two small MaxMind DB files for the collector's GeoIP tests:
#   OUTDIR/test-city.mmdb  (database type GeoLite2-City layout)
#   OUTDIR/test-asn.mmdb   (database type GeoLite2-ASN layout)
#   OUTDIR/test-city-v4.mmdb (an IPv4-only city database)
#
# Usage: make_geoip_db.pl OUTDIR
#
# Needs MaxMind::DB::Writer::Tree (Debian package libmaxmind-db-writer-perl).
# The networks are documentation and private ranges, so no real address is
# placed anywhere. The private and loopback entries exist on purpose: the
# enricher must skip those addresses even when a database holds them.
# tests/unit/enrich_test.cpp checks the values written here.
use strict;
use warnings;

BEGIN {
    eval { require MaxMind::DB::Writer::Tree; 1 } or do {
        print STDERR "make_geoip_db.pl: the Perl module MaxMind::DB::Writer::Tree is missing; "
          . "install the Debian package libmaxmind-db-writer-perl\n";
        exit 2;
    };
}

my $outdir = shift @ARGV or die "usage: make_geoip_db.pl OUTDIR\n";
-d $outdir or die "make_geoip_db.pl: output folder $outdir not found\n";

# Value types of every key in the records below; the writer needs them.
my %types = (
    city                           => 'map',
    continent                      => 'map',
    country                        => 'map',
    subdivisions                   => [ 'array', 'map' ],
    location                       => 'map',
    names                          => 'map',
    en                             => 'utf8_string',
    de                             => 'utf8_string',
    iso_code                       => 'utf8_string',
    code                           => 'utf8_string',
    geoname_id                     => 'uint32',
    latitude                       => 'double',
    longitude                      => 'double',
    accuracy_radius                => 'uint16',
    time_zone                      => 'utf8_string',
    autonomous_system_number       => 'uint32',
    autonomous_system_organization => 'utf8_string',
);

sub new_tree {
    my ( $type, $ip_version ) = @_;
    $ip_version //= 6;
    return MaxMind::DB::Writer::Tree->new(
        ip_version               => $ip_version,
        record_size              => 28,
        database_type            => $type,
        languages                => ['en'],
        description              => { en => "webtrap test $type database" },
        # Documentation and private ranges are "reserved" to the writer and
        # would be dropped without this.
        remove_reserved_networks => 0,
        # IPv4 addresses looked up in an IPv6 tree live under ::a.b.c.d.
        alias_ipv6_to_ipv4       => $ip_version == 6 ? 1 : 0,
        map_key_type_callback    => sub { $types{ $_[0] } },
    );
}

sub city_record {
    my (%f) = @_;
    my %record = (
        country => {
            iso_code   => $f{iso},
            geoname_id => $f{country_id},
            names      => { en => $f{country}, de => $f{country_de} },
        },
        location => {
            latitude        => $f{lat},
            longitude       => $f{lon},
            accuracy_radius => 20,
            time_zone       => $f{tz},
        },
    );
    $record{subdivisions} = [ { iso_code => $f{region_code}, names => { en => $f{region} } } ]
      if defined $f{region};
    $record{city} = { geoname_id => $f{city_id}, names => { en => $f{city} } }
      if defined $f{city};
    return \%record;
}

my $city = new_tree('GeoLite2-City');
$city->insert_network(
    '192.0.2.0/24',
    city_record(
        iso => 'DE', country_id => 2921044, country => 'Germany', country_de => 'Deutschland',
        region_code => 'BE', region => 'Land Berlin', city_id => 2950159, city => 'Berlin',
        lat => 52.5244, lon => 13.4105, tz => 'Europe/Berlin',
    )
);
$city->insert_network(
    '198.51.100.0/24',
    city_record(
        iso => 'BR', country_id => 3469034, country => 'Brazil', country_de => 'Brasilien',
        region_code => 'SP', region => "S\x{e3}o Paulo", city_id => 3448439, city => "S\x{e3}o Paulo",
        lat => -23.5475, lon => -46.6361, tz => 'America/Sao_Paulo',
    )
);
# A country-only entry: no subdivision and no city.
$city->insert_network(
    '203.0.113.0/24',
    city_record(
        iso => 'JP', country_id => 1861060, country => 'Japan', country_de => 'Japan',
        lat => 35.69, lon => 139.69, tz => 'Asia/Tokyo',
    )
);
$city->insert_network(
    '2001:db8::/32',
    city_record(
        iso => 'NL', country_id => 2750405, country => 'Netherlands', country_de => 'Niederlande',
        region_code => 'NH', region => 'North Holland', city_id => 2759794, city => 'Amsterdam',
        lat => 52.374, lon => 4.8897, tz => 'Europe/Amsterdam',
    )
);
# Entries the enricher must never return: loopback and private networks.
for my $network ( '127.0.0.0/8', '10.0.0.0/8', '192.168.0.0/16', 'fc00::/7' ) {
    $city->insert_network(
        $network,
        city_record(
            iso => 'AQ', country_id => 6697173, country => 'Antarctica', country_de => 'Antarktis',
            lat => -75.0, lon => 0.0, tz => 'Antarctica/Troll',
        )
    );
}

my $asn = new_tree('GeoLite2-ASN');
$asn->insert_network( '192.0.2.0/24',
    { autonomous_system_number => 64496, autonomous_system_organization => 'Example Transit GmbH' } );
$asn->insert_network( '198.51.100.0/24',
    { autonomous_system_number => 64511, autonomous_system_organization => "Provedor Exemplo S\x{e3}o Paulo" } );
# 203.0.113.0/24 has no ASN entry on purpose.
$asn->insert_network( '2001:db8::/32',
    { autonomous_system_number => 4200000000, autonomous_system_organization => 'Example Six B.V.' } );
for my $network ( '127.0.0.0/8', '10.0.0.0/8', '192.168.0.0/16', 'fc00::/7' ) {
    $asn->insert_network( $network,
        { autonomous_system_number => 65535, autonomous_system_organization => 'Must Not Appear' } );
}

my $city_v4 = new_tree( 'GeoLite2-City', 4 );
$city_v4->insert_network(
    '192.0.2.0/24',
    city_record(
        iso => 'DE', country_id => 2921044, country => 'Germany', country_de => 'Deutschland',
        region_code => 'BE', region => 'Land Berlin', city_id => 2950159, city => 'Berlin',
        lat => 52.5244, lon => 13.4105, tz => 'Europe/Berlin',
    )
);

for my $pair ( [ $city, 'test-city.mmdb' ], [ $asn, 'test-asn.mmdb' ], [ $city_v4, 'test-city-v4.mmdb' ] ) {
    my ( $tree, $name ) = @$pair;
    my $path = "$outdir/$name";
    open my $fh, '>:raw', $path or die "make_geoip_db.pl: cannot write $path: $!\n";
    $tree->write_tree($fh);
    close $fh or die "make_geoip_db.pl: cannot write $path: $!\n";
}
