// HTTP/1.1 request framing, checked before the HTTP library sees a request (RFC 9112).
//
// cpp-httplib is lenient where a server in front of tenants must not be: it takes the first of
// two differing Content-Length headers and ignores a malformed one, skips lines that end in a
// bare LF, reads any number of header lines, and answers an oversized body only after reading
// (or waiting for) all of it. Behind a proxy, lenient framing is request smuggling. The head of
// every request (request line and header fields) is parsed here first; a request that fails is
// answered with a 4xx or 5xx and its connection closed, without reading its body.
//
// Pure: no sockets, no allocation beyond the result's strings. Thread-safety: pure functions.
#ifndef KCHAIN_GATEWAY_HTTP_HTTP_FRAMING_H_
#define KCHAIN_GATEWAY_HTTP_HTTP_FRAMING_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kchain::gateway {

struct FramingLimits {
  size_t max_head_bytes = 64 * 1024;  // request line, header fields and the blank line
  size_t max_line_bytes = 8 * 1024;   // any one of those lines
  size_t max_header_count = 100;
  uint64_t max_body_bytes = uint64_t{1} << 30;
};

struct RequestHead {
  size_t leading_blank_bytes = 0;  // empty lines before the request line (RFC 9112 2.2: ignored)
  size_t head_bytes = 0;           // from the request line through the blank line
  std::string_view method;
  std::string_view target;
  bool http_1_0 = false;
  std::optional<uint64_t> content_length;
  bool chunked = false;
  bool keep_alive = true;  // after this request, by version and Connection
};

struct HeadResult {
  enum class Kind {
    kIncomplete,  // no blank line yet, and within the limits: read more
    kComplete,    // `head` describes a well-formed request
    kRejected,    // answer `http_status` with `reason`, then close the connection
  };
  Kind kind = Kind::kIncomplete;
  RequestHead head;
  int http_status = 0;
  std::string reason;
};

// Parses the request head at the start of `buffer` (the bytes received so far on a
// connection). Views in the result point into `buffer`.
//  - 400: a malformed request line or header line (bare CR or LF, whitespace before a colon
//    or at the start of a line, control characters in a value), a missing or repeated Host
//    in HTTP/1.1, Content-Length that is not a decimal number or differs between headers,
//    Content-Length together with Transfer-Encoding, chunked not the last coding;
//  - 413: Content-Length above max_body_bytes;
//  - 414: a request target longer than max_line_bytes;
//  - 431: more than max_header_count fields, a line or the head longer than the limits;
//  - 501: a transfer coding other than chunked;
//  - 505: an HTTP version other than 1.0 and 1.1.
// `scan_from` lets a caller that appends to `buffer` skip bytes already searched for the end
// of the head (pass the previous buffer size); the result is the same.
HeadResult ParseRequestHead(std::string_view buffer, const FramingLimits& limits,
                            size_t scan_from = 0);

// The reason phrase of a status code ("Bad Request", ...).
const char* HttpReasonPhrase(int status);

}  // namespace kchain::gateway

#endif  // KCHAIN_GATEWAY_HTTP_HTTP_FRAMING_H_
