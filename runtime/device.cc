#include "kchain/device.h"

#include "runtime/backend.h"

namespace kchain {

std::string_view DeviceKindName(DeviceKind kind) {
  return kind == DeviceKind::kCuda ? KCHAIN_TARGET_CUDA : KCHAIN_TARGET_HOST;
}

StatusOr<DeviceKind> ParseDeviceKind(std::string_view name) {
  if (name == KCHAIN_TARGET_HOST) return DeviceKind::kHost;
  if (name == KCHAIN_TARGET_CUDA) return DeviceKind::kCuda;
  return InvalidArgumentError("unknown device kind '" + std::string(name) +
                              "' (expected 'host' or 'cuda')");
}

Device::Device(DeviceKind kind, int ordinal, std::unique_ptr<internal::Backend> backend)
    : kind_(kind),
      ordinal_(ordinal),
      name_(backend->name()),
      limits_(backend->limits()),
      backend_(std::move(backend)) {}

Device::~Device() = default;

StatusOr<GpuWait> ParseGpuWait(std::string_view name) {
  if (name == "auto") return GpuWait::kAuto;
  if (name == "spin") return GpuWait::kSpin;
  if (name == "yield") return GpuWait::kYield;
  if (name == "block") return GpuWait::kBlock;
  return InvalidArgumentError("unknown GPU wait '" + std::string(name) +
                              "' (expected auto, spin, yield or block)");
}

StatusOr<std::shared_ptr<Device>> Device::Open(DeviceKind kind, int ordinal) {
  return Open(kind, ordinal, DeviceOptions{});
}

StatusOr<std::shared_ptr<Device>> Device::Open(DeviceKind kind, int ordinal,
                                               const DeviceOptions& options) {
  if (kind == DeviceKind::kHost) {
    if (ordinal != 0) {
      return UnavailableError("host device " + std::to_string(ordinal) +
                              " does not exist (only 0)");
    }
    return std::shared_ptr<Device>(new Device(kind, 0, internal::MakeHostBackend()));
  }
  KCHAIN_ASSIGN_OR_RETURN(auto backend, internal::MakeCudaBackend(ordinal, options.wait));
  return std::shared_ptr<Device>(new Device(kind, ordinal, std::move(backend)));
}

StatusOr<std::shared_ptr<Device>> Device::OpenAuto() {
  if (CudaDeviceCount() > 0) return Open(DeviceKind::kCuda, 0);
  return Open(DeviceKind::kHost, 0);
}

bool Device::CudaCompiledIn() { return internal::CudaCompiledIn(); }
int Device::CudaDeviceCount() { return internal::CudaDeviceCount(); }

Device::HostRegistration::HostRegistration(HostRegistration&& other) noexcept
    : device_(other.device_), ptr_(other.ptr_) {
  other.ptr_ = nullptr;
}

Device::HostRegistration& Device::HostRegistration::operator=(HostRegistration&& other) noexcept {
  if (this != &other) {
    if (ptr_ != nullptr) device_->backend().UnregisterHost(ptr_);
    device_ = other.device_;
    ptr_ = other.ptr_;
    other.ptr_ = nullptr;
  }
  return *this;
}

Device::HostRegistration::~HostRegistration() {
  if (ptr_ != nullptr) device_->backend().UnregisterHost(ptr_);
}

StatusOr<Device::HostRegistration> Device::RegisterHostMemory(void* ptr, size_t bytes) const {
  if (ptr == nullptr || bytes == 0) {
    return InvalidArgumentError("RegisterHostMemory needs a non-empty range");
  }
  KCHAIN_RETURN_IF_ERROR(backend_->RegisterHost(ptr, bytes));
  return HostRegistration(this, ptr);
}

bool Device::broken() const { return backend_->broken(); }
std::string Device::broken_reason() const { return backend_->broken_reason(); }
size_t Device::memory_in_use() const { return backend_->memory_in_use(); }
size_t Device::free_memory_bytes() const { return backend_->free_memory_bytes(); }

}  // namespace kchain
