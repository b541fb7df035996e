#include "kchain/function.h"

#include <chrono>
#include <cstring>

#include "runtime/backend.h"

namespace kchain {

StatusOr<std::shared_ptr<const Function>> Function::Create(std::shared_ptr<Device> device,
                                                           std::shared_ptr<const Library> library,
                                                           FunctionSpec spec,
                                                           std::span<const std::byte> constants) {
  if (device == nullptr || library == nullptr) {
    return InvalidArgumentError("Function::Create needs a device and a library");
  }
  if (device->broken()) {
    return UnavailableError("device is broken: " + device->broken_reason());
  }
  if (library->target() != device->kind()) {
    return InvalidArgumentError("kernel library '" + library->path() + "' targets '" +
                                std::string(DeviceKindName(library->target())) +
                                "' but the device runs '" +
                                std::string(DeviceKindName(device->kind())) + "' kernels");
  }
  KCHAIN_RETURN_IF_ERROR(ValidateFunctionSpec(spec, device->limits()));
  if (constants.size() != spec.constant_bytes) {
    return InvalidArgumentError(
        "constants are " + std::to_string(constants.size()) +
        " bytes but the spec declares constant_bytes = " + std::to_string(spec.constant_bytes));
  }

  std::shared_ptr<Function> fn(new Function());
  // Set first: the destructor frees the pinned constants through the device.
  fn->device_ = std::move(device);
  fn->library_ = std::move(library);
  fn->launchers_.reserve(spec.chain.size());
  for (size_t i = 0; i < spec.chain.size(); ++i) {
    auto launcher = fn->library_->Resolve(spec.chain[i].kernel);
    if (!launcher.ok()) return launcher.status().WithContext("chain[" + std::to_string(i) + "]");
    fn->launchers_.push_back(*launcher);
  }

  const auto start = std::chrono::steady_clock::now();
  if (!constants.empty()) {
    KCHAIN_ASSIGN_OR_RETURN(void* pinned, fn->device_->backend().AllocPinned(constants.size()));
    fn->constants_ = static_cast<std::byte*>(pinned);
    std::memcpy(fn->constants_, constants.data(), constants.size());
  }
  fn->staging_duration_ = std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::steady_clock::now() - start);
  fn->spec_ = std::move(spec);
  return std::shared_ptr<const Function>(std::move(fn));
}

Function::~Function() {
  if (constants_ != nullptr) device_->backend().FreePinned(constants_);
}

}  // namespace kchain
