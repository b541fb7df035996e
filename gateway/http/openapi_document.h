// The gateway's OpenAPI document (docs/openapi.yaml), compiled in at build time and served at
// GET /openapi.yaml and GET /v1/openapi.yaml.
#ifndef KCHAIN_GATEWAY_HTTP_OPENAPI_DOCUMENT_H_
#define KCHAIN_GATEWAY_HTTP_OPENAPI_DOCUMENT_H_

#include <string_view>

namespace kchain::gateway {

// docs/openapi.yaml's bytes, exactly.
std::string_view OpenApiDocument();

}  // namespace kchain::gateway

#endif  // KCHAIN_GATEWAY_HTTP_OPENAPI_DOCUMENT_H_
