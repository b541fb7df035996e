// The gateway's HTTP transport: cpp-httplib's Server with kchain's own connection loop.
//
// cpp-httplib parses requests and routes them; this class owns what happens on the socket
// around that, where the library is too lenient for a multi-tenant server:
//  - every request's head is read and checked first (gateway/http/http_framing.h): malformed
//    framing, conflicting lengths, oversized heads and bodies are answered at once (400, 413,
//    414, 431, 501, 505) and the connection closed, without waiting for a body;
//  - one read buffer lives as long as the connection, so requests pipelined in one segment
//    are each answered in turn (the library's per-request buffer dropped the second);
//  - a request whose body was not read to its end (a handler refused it early) closes the
//    connection, which could not carry another request;
//  - the listening socket is bound without SO_REUSEPORT, so a second server on a port in use
//    fails to start instead of silently splitting the traffic.
//
// Thread-safety: as httplib::Server. CloseAfterResponse() acts on the calling thread's
// request.
#ifndef KCHAIN_GATEWAY_HTTP_HTTP_TRANSPORT_H_
#define KCHAIN_GATEWAY_HTTP_HTTP_TRANSPORT_H_

#include <httplib.h>

#include <functional>
#include <string>

#include "gateway/http/http_framing.h"

namespace kchain::gateway {

class HttpTransport : public httplib::Server {
 public:
  // A request refused by the framing check, for the access log and the metrics: its status,
  // and method and target when the request line could be read (else empty).
  using RejectionObserver =
      std::function<void(int status, std::string_view method, std::string_view target)>;
  // Renders the body of a refusal; `target` says which API's error shape to use.
  using RejectionBody =
      std::function<std::string(int status, const std::string& reason, std::string_view target)>;

  HttpTransport(FramingLimits limits, RejectionBody body, RejectionObserver observer);

  // Called by a handler: the connection closes after this request's response (its body was
  // not read, say, so the connection cannot carry another request).
  static void CloseAfterResponse();

  // Socket options for the listening socket: SO_REUSEADDR (a restart may rebind at once) but
  // never SO_REUSEPORT.
  static void ListenSocketOptions(int sock);

 private:
  bool process_and_close_socket(socket_t sock) override;

  FramingLimits limits_;
  RejectionBody rejection_body_;
  RejectionObserver observer_;
};

}  // namespace kchain::gateway

#endif  // KCHAIN_GATEWAY_HTTP_HTTP_TRANSPORT_H_
