//! wgpu adapters: listing them for `devices` and the availability announcement, and opening the
//! one a job runs on (by name, or the best one: a discrete GPU before an integrated one before a
//! CPU rasteriser such as lavapipe).

use serde::Serialize;

use crate::error::RenderError;

/// One adapter as `devices --json` and the announcement show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceInfo {
    /// Adapter name (`llvmpipe (LLVM 15.0.6, 256 bits)`, `NVIDIA H100 80GB HBM3`).
    pub name: String,
    /// Backend: `vulkan`, `gl`, ….
    pub backend: String,
    /// `discrete_gpu`, `integrated_gpu`, `virtual_gpu`, `cpu` or `other`.
    pub device_type: String,
    /// Driver and version, as the driver reports them.
    pub driver: String,
    /// Largest storage buffer binding, bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer, bytes.
    pub max_buffer_size: u64,
    /// Most invocations per workgroup.
    pub max_compute_invocations_per_workgroup: u32,
}

impl DeviceInfo {
    fn of(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let limits = adapter.limits();
        DeviceInfo {
            name: info.name,
            backend: info.backend.to_str().to_owned(),
            device_type: device_type(info.device_type).to_owned(),
            driver: [info.driver, info.driver_info]
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join(" "),
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_buffer_size: limits.max_buffer_size,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
        }
    }

    /// Whether this is a real GPU rather than a CPU rasteriser.
    pub fn is_gpu(&self) -> bool {
        matches!(self.device_type.as_str(), "discrete_gpu" | "integrated_gpu" | "virtual_gpu")
    }

    /// `backend:name`, the form `--device` accepts most precisely.
    pub fn id(&self) -> String {
        format!("{}:{}", self.backend, self.name)
    }
}

fn device_type(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::DiscreteGpu => "discrete_gpu",
        wgpu::DeviceType::IntegratedGpu => "integrated_gpu",
        wgpu::DeviceType::VirtualGpu => "virtual_gpu",
        wgpu::DeviceType::Cpu => "cpu",
        wgpu::DeviceType::Other => "other",
    }
}

fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// Usable adapters of `backends`, best first. Adapters that cannot run compute shaders are left
/// out.
fn adapters(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let mut all: Vec<wgpu::Adapter> = pollster::block_on(instance().enumerate_adapters(backends))
        .into_iter()
        .filter(|a| a.get_downlevel_capabilities().flags.contains(wgpu::DownlevelFlags::COMPUTE_SHADERS))
        .collect();
    all.sort_by_key(|a| {
        let info = a.get_info();
        // Vulkan first among equals: the backend the renderer is tested on most.
        (rank(info.device_type), info.backend != wgpu::Backend::Vulkan)
    });
    all
}

/// Every usable adapter, best first.
pub fn list() -> Vec<DeviceInfo> {
    adapters(wgpu::Backends::all()).iter().map(DeviceInfo::of).collect()
}

/// An opened adapter, ready to run compute pipelines.
pub struct Gpu {
    /// What it is.
    pub info: DeviceInfo,
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
}

impl Gpu {
    /// Opens the best adapter, or the first whose `backend:name` contains `wanted`
    /// (case-insensitive; `cpu` and `gpu` pick by type).
    pub fn open(wanted: Option<&str>) -> Result<Gpu, RenderError> {
        // GL is asked only when wanted or when nothing else is there: probing EGL is slow and
        // noisy (Mesa complains about a missing Wayland session on stderr).
        let wants_gl = wanted.is_some_and(|w| w.to_lowercase().starts_with("gl"));
        let mut all = if wants_gl { Vec::new() } else { adapters(wgpu::Backends::PRIMARY) };
        if all.is_empty() {
            all = adapters(wgpu::Backends::all());
        }
        if all.is_empty() {
            return Err(RenderError::Device(
                "no Vulkan or GL adapter with compute shaders (install mesa-vulkan-drivers for the CPU one, lavapipe)"
                    .into(),
            ));
        }
        let chosen = match wanted {
            None => all.into_iter().next(),
            Some(w) => {
                let w = w.to_lowercase();
                let names: Vec<String> = all.iter().map(|a| DeviceInfo::of(a).id()).collect();
                let found = all.into_iter().find(|a| {
                    let info = DeviceInfo::of(a);
                    match w.as_str() {
                        "cpu" => !info.is_gpu(),
                        "gpu" => info.is_gpu(),
                        _ => info.id().to_lowercase().contains(&w),
                    }
                });
                if found.is_none() {
                    return Err(RenderError::Device(format!(
                        "--device {w:?} matches none of: {}",
                        names.join(", ")
                    )));
                }
                found
            }
        };
        let adapter = chosen.ok_or_else(|| RenderError::Device("no adapter".into()))?;
        let info = DeviceInfo::of(&adapter);
        let descriptor = wgpu::DeviceDescriptor {
            label: Some("bigfile-compute"),
            required_limits: adapter.limits(),
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&descriptor))
            .map_err(|e| RenderError::Device(format!("{}: cannot open: {e}", info.id())))?;
        Ok(Gpu { info, device, queue })
    }
}
