// The in-process executor: instances are kchain::Instance objects in the gateway's process.
// Fast, and no isolation: a launcher that crashes takes the gateway with it.
#include <chrono>

#include "gateway/exec/executor.h"
#include "runtime/clock.h"

namespace kchain::gateway {
namespace {

using Clock = std::chrono::steady_clock;

class InProcessVersion final : public LoadedVersion {
 public:
  using LoadedVersion::LoadedVersion;
  std::shared_ptr<const kchain::Function> function;
};

class InProcessInstance final : public ExecInstance {
 public:
  explicit InProcessInstance(std::unique_ptr<kchain::Instance> instance)
      : instance_(std::move(instance)) {}

  std::span<std::byte> input_buffer() override { return instance_->input_staging(); }
  std::span<const std::byte> output_buffer() const override { return instance_->output_staging(); }
  Status Run(size_t input_bytes, kchain::RunTimings* timings) override {
    return instance_->RunStaged(input_bytes, timings);
  }
  Status Park() override { return instance_->Park(); }
  Status Wake(StartTimings* timings) override {
    KCHAIN_RETURN_IF_ERROR(instance_->Wake());
    timings->constants_us = instance_->timings().constants_upload_us;
    timings->create_us = instance_->timings().wake_us - timings->constants_us;
    return Status();
  }
  bool broken() const override { return instance_->state() == kchain::InstanceState::kBroken; }
  kchain::ExecMode exec_mode() const override { return instance_->exec_mode(); }

 private:
  std::unique_ptr<kchain::Instance> instance_;
};

class InProcessExecutor final : public Executor {
 public:
  InProcessExecutor(std::shared_ptr<kchain::Device> device, kchain::InstanceOptions options)
      : device_(std::move(device)), options_(options) {}

  kchain::DeviceKind device_kind() const override { return device_->kind(); }
  std::string device_name() const override { return device_->name(); }

  // In-process, a stored function is loaded at start-up as at a deploy: its instances run
  // here either way.
  StatusOr<std::shared_ptr<LoadedVersion>> Load(const StoredVersion& stored,
                                                const kchain::Manifest& manifest,
                                                LoadPurpose) override {
    auto version = std::make_shared<InProcessVersion>(stored.key, stored.record.version, manifest);
    KCHAIN_ASSIGN_OR_RETURN(auto library,
                            kchain::Library::Open(stored.library_path, device_->kind(),
                                                  kchain::LibraryOptions{.never_unload = true}));
    version->library_load_us =
        std::chrono::duration<double, std::micro>(library->load_duration()).count();
    const auto start = Clock::now();
    std::string constants;
    if (!stored.constants_path.empty()) {
      KCHAIN_ASSIGN_OR_RETURN(constants, kchain::ReadFileToString(stored.constants_path));
    }
    KCHAIN_ASSIGN_OR_RETURN(
        version->function,
        kchain::Function::Create(device_, std::move(library), manifest.spec,
                                 std::as_bytes(std::span(constants.data(), constants.size()))));
    version->constants_load_us = MicrosSince(start);
    return std::shared_ptr<LoadedVersion>(std::move(version));
  }

  StatusOr<std::unique_ptr<ExecInstance>> CreateInstance(
      const std::shared_ptr<LoadedVersion>& version, StartTimings* timings) override {
    const auto& loaded = static_cast<const InProcessVersion&>(*version);
    KCHAIN_ASSIGN_OR_RETURN(auto instance, kchain::Instance::Create(loaded.function, options_));
    timings->constants_us = instance->timings().constants_upload_us;
    timings->create_us = instance->timings().create_us - timings->constants_us;
    return std::unique_ptr<ExecInstance>(new InProcessInstance(std::move(instance)));
  }

  bool Ready(std::string* why) const override {
    if (!device_->broken()) return true;
    *why = "device " + device_->name() + " is broken: " + device_->broken_reason();
    return false;
  }

  size_t device_memory_in_use() const override { return device_->memory_in_use(); }
  size_t device_memory_total() const override { return device_->limits().total_memory_bytes; }

  ExecutorStats Stats() const override {
    ExecutorStats stats;
    stats.isolation = "none";
    stats.sandbox = "none: kernels run inside the gateway process";
    return stats;
  }

 private:
  std::shared_ptr<kchain::Device> device_;
  kchain::InstanceOptions options_;
};

}  // namespace

std::unique_ptr<Executor> MakeInProcessExecutor(std::shared_ptr<kchain::Device> device,
                                                kchain::InstanceOptions options) {
  return std::make_unique<InProcessExecutor>(std::move(device), options);
}

}  // namespace kchain::gateway
