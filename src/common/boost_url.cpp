// Boost.URL's compiled part, built once for the whole program, because
// Debian 12's Boost 1.81 ships the headers without a libboost_url to link.
// Include <boost/url/...> headers anywhere; do not include src.hpp again.
#include <boost/url/src.hpp>
