// kchain._core: the kchain runtime in-process, for local runs (kchain.local).
//
// One LocalFunction = a loaded library, a function spec, constants, and one instance on a
// device. Inputs and outputs cross as buffers (numpy arrays): the input is copied once into
// the instance's pinned staging buffer and the output once out of it, with the GIL released
// for the copies and the run. Runtime failures raise the SDK's exception classes
// (kchain.errors), chosen by the same status codes the gateway uses.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <map>
#include <memory>
#include <mutex>

#include "kchain/function.h"
#include "kchain/manifest.h"

namespace py = pybind11;
using namespace kchain;

namespace {

// A failed Status on its way to Python.
struct StatusError {
  Status status;
};

template <typename T>
T Unwrap(StatusOr<T> value) {
  if (!value.ok()) throw StatusError{value.status()};
  return std::move(value).value();
}

void Check(const Status& status) {
  if (!status.ok()) throw StatusError{status};
}

// One device per kind and ordinal in the process, shared by every local function (a CUDA
// context is expensive and process-wide anyway).
std::shared_ptr<Device> SharedDevice(const std::string& name, int ordinal) {
  static std::mutex mu;
  static std::map<std::pair<std::string, int>, std::shared_ptr<Device>> devices;
  std::lock_guard<std::mutex> lock(mu);
  std::string kind = name;
  if (kind == "auto") kind = Device::CudaDeviceCount() > ordinal ? "cuda" : "host";
  auto& device = devices[{kind, kind == "host" ? 0 : ordinal}];
  if (device == nullptr) {
    device = Unwrap(Device::Open(Unwrap(ParseDeviceKind(kind)), kind == "host" ? 0 : ordinal));
  }
  return device;
}

py::dict TensorDict(const TensorSpec& type, const std::string& name) {
  py::dict d;
  d["dtype"] = std::string(ElementTypeName(type.dtype));
  d["shape"] = type.shape;
  d["name"] = name;
  return d;
}

// A manifest as kchain.manifest reads it: parsed and checked by kchain::ParseManifest, the
// parser the gateway uses, so that the SDK and a deploy agree on every manifest.
py::dict ManifestDict(const Manifest& m) {
  py::dict d;
  d["name"] = m.name;
  d["description"] = m.description;
  py::list chain;
  for (const Stage& stage : m.spec.chain) {
    chain.append(py::make_tuple(stage.kernel, stage.grid, stage.block));
  }
  d["chain"] = chain;
  d["max_input_bytes"] = m.spec.max_input_bytes;
  d["tmp_bytes"] = m.spec.tmp_bytes;
  d["out_bytes"] = m.spec.out_bytes;
  d["constant_bytes"] = m.spec.constant_bytes;
  d["input"] = TensorDict(m.spec.input, m.input_name);
  d["output"] = TensorDict(m.spec.output, m.output_name);
  d["library"] = m.libraries;
  d["constants"] = m.constants;
  return d;
}

py::dict RunTimingsDict(const RunTimings& t) {
  py::dict d;
  d["mode"] = std::string(ExecModeName(t.mode));
  d["stages_timed"] = t.stages_timed;
  d["input_copy_us"] = t.input_copy_us;
  d["chain_us"] = t.chain_us;
  d["output_copy_us"] = t.output_copy_us;
  d["total_us"] = t.total_us;
  return d;
}

class LocalFunction {
 public:
  LocalFunction(const std::string& device, int ordinal, const std::string& library_path,
                const std::string& manifest_json, const py::buffer& constants,
                uint32_t stage_timing_period, bool graph) {
    const Manifest manifest = Unwrap(ParseManifest(manifest_json));
    device_ = SharedDevice(device, ordinal);
    library_ = Unwrap(Library::Open(library_path, device_->kind()));
    const py::buffer_info info = constants.request();
    const auto* bytes = static_cast<const std::byte*>(info.ptr);
    function_ = Unwrap(Function::Create(device_, library_, manifest.spec,
                                        {bytes, static_cast<size_t>(info.size * info.itemsize)}));
    InstanceOptions options;
    options.stage_timing_period = stage_timing_period;
    if (!graph) options.graph = GraphPolicy::kDisabled;
    instance_ = Unwrap(Instance::Create(function_, options));
  }

  // Copies `input` in, runs the chain, copies the output into `output` (at least out_bytes,
  // writable, contiguous). The GIL is released meanwhile; concurrent calls are serialized.
  py::dict Run(const py::buffer& input, const py::buffer& output) {
    const py::buffer_info in = input.request();
    const py::buffer_info out = output.request(/*writable=*/true);
    const size_t in_bytes = static_cast<size_t>(in.size * in.itemsize);
    const size_t out_bytes = static_cast<size_t>(out.size * out.itemsize);
    RunTimings timings;
    Status status;
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mu_);
      status = instance_->Run({static_cast<const std::byte*>(in.ptr), in_bytes},
                              {static_cast<std::byte*>(out.ptr), out_bytes}, &timings);
    }
    Check(status);
    return RunTimingsDict(timings);
  }

  void Park() {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mu_);
    Check(instance_->Park());
  }

  void Wake() {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mu_);
    Check(instance_->Wake());
  }

  py::dict Info() {
    std::lock_guard<std::mutex> lock(mu_);
    py::dict d;
    d["device"] = device_->name();
    d["device_kind"] = std::string(DeviceKindName(device_->kind()));
    d["library"] = library_->path();
    d["state"] = std::string(InstanceStateName(instance_->state()));
    d["exec_mode"] = std::string(ExecModeName(instance_->exec_mode()));
    d["graph_status"] = instance_->graph_status();
    d["device_bytes"] = instance_->device_bytes();
    d["library_load_us"] =
        std::chrono::duration<double, std::micro>(library_->load_duration()).count();
    d["create_us"] = instance_->timings().create_us;
    d["constants_upload_us"] = instance_->timings().constants_upload_us;
    d["wake_us"] = instance_->timings().wake_us;
    d["graph_capture_us"] = instance_->timings().graph_capture_us;
    const InstanceStats& s = instance_->stats();
    d["runs"] = s.runs;
    d["failed_runs"] = s.failed_runs;
    d["graph_runs"] = s.graph_runs;
    d["constant_uploads"] = s.constant_uploads;
    return d;
  }

 private:
  std::mutex mu_;
  std::shared_ptr<Device> device_;
  std::shared_ptr<const Library> library_;
  std::shared_ptr<const Function> function_;
  std::unique_ptr<Instance> instance_;
};

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "The kchain runtime in-process (see kchain.local).";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const StatusError& e) {
      // The SDK's exception for this code, e.g. kchain.errors.KernelError.
      py::object errors = py::module_::import("kchain.errors");
      py::object exc = errors.attr("error_from_code")(std::string(StatusCodeName(e.status.code())),
                                                      e.status.message());
      PyErr_SetObject(exc.get_type().ptr(), exc.ptr());
    }
  });

  m.def(
      "device_info",
      [](const std::string& device, int ordinal) {
        auto d = SharedDevice(device, ordinal);
        py::dict info;
        info["kind"] = std::string(DeviceKindName(d->kind()));
        info["name"] = d->name();
        info["max_threads_per_block"] = d->limits().max_threads_per_block;
        info["total_memory_bytes"] = d->limits().total_memory_bytes;
        return info;
      },
      py::arg("device") = "auto", py::arg("ordinal") = 0,
      "Opens (once per process) and describes a device: 'auto', 'cuda' or 'host'.");
  m.def(
      "parse_manifest",
      [](const std::string& json_text) { return ManifestDict(Unwrap(ParseManifest(json_text))); },
      py::arg("json_text"),
      "Parses and checks a manifest with the gateway's parser; InvalidArgumentError naming the "
      "offending value otherwise.");
  m.def("cuda_compiled_in", &Device::CudaCompiledIn,
        "Whether this build of the module has the CUDA backend.");
  m.def("cuda_device_count", &Device::CudaDeviceCount, "Visible CUDA devices.");
  m.attr("abi_version") = KCHAIN_ABI_VERSION;

  py::class_<LocalFunction>(m, "LocalFunction")
      .def(py::init<const std::string&, int, const std::string&, const std::string&,
                    const py::buffer&, uint32_t, bool>(),
           py::arg("device"), py::arg("ordinal"), py::arg("library"), py::arg("manifest"),
           py::arg("constants"), py::arg("stage_timing_period") = 1, py::arg("graph") = true)
      .def("run", &LocalFunction::Run, py::arg("input"), py::arg("output"))
      .def("park", &LocalFunction::Park)
      .def("wake", &LocalFunction::Wake)
      .def("info", &LocalFunction::Info);
}
