//! The job spec a client posts: versioned, render or infer, its inputs as BigFile object ids, and
//! the limits the client accepts. Checked field by field, then against the limits this agent is
//! configured to run, before any work.
//!
//! ```json
//! { "version": 1, "kind": "render", "scene": { ... },
//!   "limits": { "max_wall_secs": 600, "max_device_memory": 268435456, "max_output_bytes": 16777216 } }
//! { "version": 1, "kind": "infer", "model": "0x…", "input": "0x…",
//!   "limits": { ... } }
//! ```

use bigfile_storage::ObjectId;
use serde::{Deserialize, Serialize};

use crate::error::SpecError;
use crate::scene::Scene;

/// The only spec version this agent reads.
pub const VERSION: u32 = 1;

/// A job as posted. (Unknown top-level fields are refused by [`JobSpec::from_json`]; serde's
/// own check does not work through the flattened kind.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Spec format version ([`VERSION`]).
    pub version: u32,
    /// What to compute.
    #[serde(flatten)]
    pub job: Job,
    /// What the client accepts to pay for in time and size.
    pub limits: Limits,
}

/// The two job kinds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Path-trace a scene into a PNG.
    Render {
        /// The scene, inline.
        scene: Scene,
    },
    /// Apply a model to an input.
    Infer {
        /// The model's safetensors object (`0x` + 64 hex digits).
        model: String,
        /// The input object (an image).
        input: String,
    },
}

/// Limits a job runs under; the agent refuses a job whose limits exceed its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Wall time from start to the last tile, seconds.
    pub max_wall_secs: u64,
    /// Device memory the job may allocate, bytes.
    pub max_device_memory: u64,
    /// Size of the output object, bytes.
    pub max_output_bytes: u64,
}

/// What an agent is willing to run (from its `[compute]` configuration).
pub type AgentLimits = Limits;

impl JobSpec {
    /// Parses and checks a spec; `what` names the source in errors.
    pub fn from_json(text: &str, what: &str) -> Result<JobSpec, SpecError> {
        // Version first, so a future format gets "version 2 is not supported", not a field error.
        let raw: serde_json::Value =
            serde_json::from_str(text).map_err(|e| SpecError::new(what, format!("not JSON: {e}")))?;
        match raw.get("version").and_then(serde_json::Value::as_u64) {
            Some(v) if v == u64::from(VERSION) => {}
            Some(v) => {
                return Err(SpecError::new(
                    format!("{what}.version"),
                    format!("{v} is not supported (this agent reads {VERSION})"),
                ));
            }
            None => return Err(SpecError::new(format!("{what}.version"), "missing (must be 1)")),
        }
        let allowed: &[&str] = match raw.get("kind").and_then(serde_json::Value::as_str) {
            Some("render") => &["version", "kind", "limits", "scene"],
            Some("infer") => &["version", "kind", "limits", "model", "input"],
            Some(other) => {
                return Err(SpecError::new(
                    format!("{what}.kind"),
                    format!("{other:?} is not a job kind (render, infer)"),
                ));
            }
            None => return Err(SpecError::new(format!("{what}.kind"), "missing (render or infer)")),
        };
        if let Some(unknown) = raw.as_object().and_then(|o| o.keys().find(|k| !allowed.contains(&k.as_str())))
        {
            return Err(SpecError::new(format!("{what}.{unknown}"), "unknown field"));
        }
        let spec: JobSpec = serde_json::from_value(raw)
            .map_err(|e| SpecError::new(what, format!("not a valid job spec: {e}")))?;
        spec.validate(what)?;
        Ok(spec)
    }

    /// Checks every field; errors are named `prefix.field`.
    pub fn validate(&self, prefix: &str) -> Result<(), SpecError> {
        let l = &self.limits;
        for (name, v) in [
            ("max_wall_secs", l.max_wall_secs),
            ("max_device_memory", l.max_device_memory),
            ("max_output_bytes", l.max_output_bytes),
        ] {
            if v == 0 {
                return Err(SpecError::new(format!("{prefix}.limits.{name}"), "must be greater than 0"));
            }
        }
        match &self.job {
            Job::Render { scene } => {
                scene.validate(&format!("{prefix}.scene"))?;
                let output = render_output_bytes(scene);
                if output > l.max_output_bytes {
                    return Err(SpecError::new(
                        format!("{prefix}.limits.max_output_bytes"),
                        format!(
                            "the {}x{} image needs up to {output} bytes, more than the {} allowed",
                            scene.width, scene.height, l.max_output_bytes
                        ),
                    ));
                }
                let memory = render_device_memory(scene);
                if memory > l.max_device_memory {
                    return Err(SpecError::new(
                        format!("{prefix}.limits.max_device_memory"),
                        format!(
                            "rendering needs {memory} bytes of device memory, more than the {} allowed",
                            l.max_device_memory
                        ),
                    ));
                }
            }
            Job::Infer { model, input } => {
                for (name, id) in [("model", model), ("input", input)] {
                    ObjectId::from_hex(id).map_err(|e| {
                        SpecError::new(
                            format!("{prefix}.{name}"),
                            format!("not an object id (0x + 64 hex digits): {e}"),
                        )
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Refuses a job that asks more than this agent runs, naming the limit.
    pub fn check_against(&self, agent: &AgentLimits) -> Result<(), SpecError> {
        let (ours, theirs) = (agent, &self.limits);
        for (name, asked, allowed) in [
            ("max_wall_secs", theirs.max_wall_secs, ours.max_wall_secs),
            ("max_device_memory", theirs.max_device_memory, ours.max_device_memory),
            ("max_output_bytes", theirs.max_output_bytes, ours.max_output_bytes),
        ] {
            if asked > allowed {
                return Err(SpecError::new(
                    format!("limits.{name}"),
                    format!(
                        "the job asks for {asked}, this agent allows at most {allowed} (its [compute] config)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The inputs the job reads, as object ids.
    pub fn inputs(&self) -> Vec<ObjectId> {
        match &self.job {
            Job::Render { .. } => Vec::new(),
            Job::Infer { model, input } => {
                [model, input].iter().filter_map(|id| ObjectId::from_hex(id).ok()).collect()
            }
        }
    }
}

/// Largest PNG the render can produce: raw RGB plus a byte per row and the zlib and chunk framing
/// of stored (uncompressed) blocks, an upper bound whatever the compression achieves.
pub fn render_output_bytes(scene: &Scene) -> u64 {
    let raw = (u64::from(scene.width) * 3 + 1) * u64::from(scene.height);
    raw + raw / 65_535 * 5 + 1024
}

/// Device memory a render allocates at once: one tile's sums and readback (16 bytes a pixel each),
/// the scene's primitives and materials and the parameters.
pub fn render_device_memory(scene: &Scene) -> u64 {
    let tile = u64::from(scene.tile_size).pow(2);
    tile * 32 + scene.objects.len() as u64 * 64 + scene.materials.len() as u64 * 32 + 256
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_spec() -> String {
        format!(
            r#"{{"version": 1, "kind": "render", "scene": {}, "limits": {{"max_wall_secs": 600, "max_device_memory": 1048576, "max_output_bytes": 1048576}}}}"#,
            include_str!("../../examples/scenes/cornell.json")
        )
    }

    #[test]
    fn the_example_kinds_parse() {
        let spec = JobSpec::from_json(&render_spec(), "job.json").expect("render spec");
        assert!(matches!(spec.job, Job::Render { .. }));
        let id = format!("0x{}", "ab".repeat(32));
        let infer = format!(
            r#"{{"version": 1, "kind": "infer", "model": "{id}", "input": "{id}", "limits": {{"max_wall_secs": 60, "max_device_memory": 1, "max_output_bytes": 1}}}}"#
        );
        let spec = JobSpec::from_json(&infer, "job.json").expect("infer spec");
        assert_eq!(spec.inputs().len(), 2);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (render_spec().replace(r#""version": 1"#, r#""version": 2"#), "job.json.version"),
            (render_spec().replace(r#""version": 1, "#, ""), "job.json.version"),
            (
                render_spec().replace(r#""max_wall_secs": 600"#, r#""max_wall_secs": 0"#),
                "job.json.limits.max_wall_secs",
            ),
            (
                render_spec().replace(r#""max_output_bytes": 1048576"#, r#""max_output_bytes": 1000"#),
                "job.json.limits.max_output_bytes",
            ),
            (
                render_spec().replace(r#""max_device_memory": 1048576"#, r#""max_device_memory": 100"#),
                "job.json.limits.max_device_memory",
            ),
            (
                render_spec().replace(r#""samples_per_pixel": 64"#, r#""samples_per_pixel": 0"#),
                "job.json.scene.samples_per_pixel",
            ),
            (render_spec().replace(r#""kind": "render""#, r#""kind": "bake""#), "job.json.kind"),
            (
                render_spec().replace(r#""kind": "render""#, r#""kind": "render", "colour": 1"#),
                "job.json.colour",
            ),
        ];
        for (text, field) in cases {
            let e = JobSpec::from_json(&text, "job.json").expect_err(field);
            assert_eq!(e.field, field, "{e}");
        }
        let bad_id = r#"{"version": 1, "kind": "infer", "model": "0x12", "input": "0x12", "limits": {"max_wall_secs": 1, "max_device_memory": 1, "max_output_bytes": 1}}"#;
        assert_eq!(JobSpec::from_json(bad_id, "j").expect_err("bad id").field, "j.model");
    }

    #[test]
    fn a_job_beyond_the_agents_limits_is_refused_before_work() {
        let spec = JobSpec::from_json(&render_spec(), "job.json").expect("spec");
        let roomy = Limits { max_wall_secs: 3600, max_device_memory: 1 << 30, max_output_bytes: 1 << 30 };
        spec.check_against(&roomy).expect("fits");
        let short = Limits { max_wall_secs: 60, ..roomy };
        let e = spec.check_against(&short).expect_err("too long");
        assert_eq!(e.field, "limits.max_wall_secs");
        assert!(e.why.contains("asks for 600") && e.why.contains("at most 60"), "{e}");
    }
}
