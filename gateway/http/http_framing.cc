#include "gateway/http/http_framing.h"

#include <cstring>

namespace kchain::gateway {
namespace {

// RFC 9110 5.6.2: tchar.
bool IsTokenChar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsTokenChar(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if ((a[i] | 0x20) != (b[i] | 0x20)) return false;
  }
  return true;
}

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

HeadResult Reject(int status, std::string reason) {
  HeadResult r;
  r.kind = HeadResult::Kind::kRejected;
  r.http_status = status;
  r.reason = std::move(reason);
  return r;
}

// Calls `each(item)` for the comma-separated items of a field value, trimmed (empty items,
// which the list syntax allows, are skipped).
template <typename F>
bool ForEachListItem(std::string_view value, F each) {
  while (true) {
    const size_t comma = value.find(',');
    const std::string_view item = TrimOws(value.substr(0, comma));
    if (!item.empty() && !each(item)) return false;
    if (comma == std::string_view::npos) return true;
    value.remove_prefix(comma + 1);
  }
}

}  // namespace

const char* HttpReasonPhrase(int status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 431:
      return "Request Header Fields Too Large";
    case 501:
      return "Not Implemented";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Error";
  }
}

HeadResult ParseRequestHead(std::string_view buffer, const FramingLimits& limits,
                            size_t scan_from) {
  // Empty lines before the request line are ignored (RFC 9112 2.2).
  size_t start = 0;
  while (buffer.size() >= start + 2 && buffer[start] == '\r' && buffer[start + 1] == '\n') {
    start += 2;
    if (start > limits.max_head_bytes)
      return Reject(400, "too many empty lines before the request");
  }
  if (start < buffer.size() && buffer[start] == '\n') {
    return Reject(400, "a line ends in a bare LF (HTTP/1.1 lines end in CRLF)");
  }

  // Find the blank line that ends the head; every LF on the way must follow a CR.
  size_t from = std::max(start, scan_from > 3 ? scan_from - 3 : size_t{0});
  size_t end = std::string_view::npos;
  while (true) {
    const size_t lf = buffer.find('\n', from);
    if (lf == std::string_view::npos || lf - start >= limits.max_head_bytes) break;
    if (lf == 0 || buffer[lf - 1] != '\r') {
      return Reject(400, "a line ends in a bare LF (HTTP/1.1 lines end in CRLF)");
    }
    if (lf >= start + 3 && buffer[lf - 2] == '\n' && buffer[lf - 3] == '\r') {
      end = lf + 1;
      break;
    }
    from = lf + 1;
  }
  if (end == std::string_view::npos) {
    if (buffer.size() - start >= limits.max_head_bytes) {
      return Reject(431, "the request head (request line and header fields) is larger than " +
                             std::to_string(limits.max_head_bytes) + " bytes");
    }
    HeadResult more;
    more.kind = HeadResult::Kind::kIncomplete;
    return more;
  }

  HeadResult result;
  RequestHead& head = result.head;
  // From here on a refusal keeps what was parsed (the method and target name the API whose
  // error shape the answer takes).
  auto Reject = [&result](int status, std::string reason) {
    result.kind = HeadResult::Kind::kRejected;
    result.http_status = status;
    result.reason = std::move(reason);
    return result;
  };
  head.leading_blank_bytes = start;
  head.head_bytes = end - start;
  std::string_view rest = buffer.substr(start, end - start - 2);  // without the blank line

  // The request line: method SP request-target SP HTTP-version.
  size_t eol = rest.find("\r\n");
  const std::string_view line = rest.substr(0, eol);
  rest.remove_prefix(eol == std::string_view::npos ? rest.size() : eol + 2);
  if (line.size() > limits.max_line_bytes) {
    return Reject(
        414, "the request line is longer than " + std::to_string(limits.max_line_bytes) + " bytes");
  }
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos ||
      line.find(' ', sp2 + 1) != std::string_view::npos) {
    return Reject(400, "the request line is not 'METHOD TARGET HTTP/1.1'");
  }
  head.method = line.substr(0, sp1);
  head.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!IsToken(head.method)) return Reject(400, "the request method is not a token");
  if (head.target.empty()) return Reject(400, "the request target is empty");
  for (char c : head.target) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) {
      return Reject(400, "the request target holds a character that must be percent-encoded");
    }
  }
  if (version == "HTTP/1.1") {
    head.http_1_0 = false;
  } else if (version == "HTTP/1.0") {
    head.http_1_0 = true;
    head.keep_alive = false;
  } else if (version.size() == 8 && version.substr(0, 5) == "HTTP/" && version[6] == '.' &&
             version[5] >= '0' && version[5] <= '9' && version[7] >= '0' && version[7] <= '9') {
    return Reject(505, "HTTP version " + std::string(version.substr(5)) +
                           " is not supported (1.1 and 1.0 are)");
  } else {
    return Reject(400, "the request line does not end in an HTTP version");
  }

  // Header fields.
  size_t count = 0, hosts = 0;
  bool saw_transfer_encoding = false, connection_close = false, connection_keep_alive = false;
  while (!rest.empty()) {
    eol = rest.find("\r\n");
    const std::string_view field = rest.substr(0, eol);
    rest.remove_prefix(eol == std::string_view::npos ? rest.size() : eol + 2);
    if (++count > limits.max_header_count) {
      return Reject(431, "more than " + std::to_string(limits.max_header_count) + " header fields");
    }
    if (field.size() > limits.max_line_bytes) {
      return Reject(
          431, "a header field is longer than " + std::to_string(limits.max_line_bytes) + " bytes");
    }
    if (field.empty() || field[0] == ' ' || field[0] == '\t') {
      return Reject(400, "a header line starts with whitespace (obsolete line folding)");
    }
    const size_t colon = field.find(':');
    if (colon == std::string_view::npos) return Reject(400, "a header line has no colon");
    const std::string_view name = field.substr(0, colon);
    if (!IsToken(name)) {
      return Reject(400, "a header field name is not a token (no whitespace before the colon)");
    }
    const std::string_view value = TrimOws(field.substr(colon + 1));
    for (char c : value) {
      const auto u = static_cast<unsigned char>(c);
      if ((u < 0x20 && c != '\t') || u == 0x7f) {
        return Reject(400, "header field '" + std::string(name.substr(0, 64)) +
                               "' holds a control character");
      }
    }
    if (EqualsIgnoreCase(name, "content-length")) {
      if (value.empty() || value.size() > 19 ||
          value.find_first_not_of("0123456789") != std::string_view::npos) {
        return Reject(400, "Content-Length is not a decimal byte count");
      }
      uint64_t n = 0;
      for (char c : value) n = n * 10 + static_cast<uint64_t>(c - '0');
      if (head.content_length && *head.content_length != n) {
        return Reject(400, "two Content-Length headers disagree");
      }
      head.content_length = n;
    } else if (EqualsIgnoreCase(name, "transfer-encoding")) {
      bool ok = true;
      std::string unknown;
      ForEachListItem(value, [&](std::string_view coding) {
        if (head.chunked) {
          ok = false;  // nothing may follow chunked
          return false;
        }
        if (EqualsIgnoreCase(coding, "chunked")) {
          head.chunked = true;
        } else {
          unknown = std::string(coding.substr(0, 32));
          return false;
        }
        return true;
      });
      saw_transfer_encoding = true;
      if (!unknown.empty()) {
        return Reject(501, "transfer coding '" + unknown + "' is not supported (only chunked)");
      }
      if (!ok) return Reject(400, "chunked must be the last transfer coding, and appear once");
    } else if (EqualsIgnoreCase(name, "host")) {
      ++hosts;
      if (value.find_first_of(" \t") != std::string_view::npos) {
        return Reject(400, "the Host header holds whitespace");
      }
    } else if (EqualsIgnoreCase(name, "connection")) {
      ForEachListItem(value, [&](std::string_view option) {
        if (EqualsIgnoreCase(option, "close")) connection_close = true;
        if (EqualsIgnoreCase(option, "keep-alive")) connection_keep_alive = true;
        return true;
      });
    }
  }
  if (saw_transfer_encoding && !head.chunked) {
    return Reject(400, "Transfer-Encoding names no coding");
  }
  if (head.chunked && head.content_length) {
    return Reject(400, "a request has both Content-Length and Transfer-Encoding");
  }
  if (head.chunked && head.http_1_0) return Reject(400, "HTTP/1.0 has no chunked transfer coding");
  if (hosts > 1) return Reject(400, "more than one Host header");
  if (hosts == 0 && !head.http_1_0) return Reject(400, "an HTTP/1.1 request needs a Host header");
  if (head.content_length && *head.content_length > limits.max_body_bytes) {
    return Reject(413, "the request body (" + std::to_string(*head.content_length) +
                           " bytes) is larger than the server's limit (" +
                           std::to_string(limits.max_body_bytes) + " bytes, --max-body)");
  }
  head.keep_alive = head.http_1_0 ? connection_keep_alive && !connection_close : !connection_close;
  result.kind = HeadResult::Kind::kComplete;
  return result;
}

}  // namespace kchain::gateway
