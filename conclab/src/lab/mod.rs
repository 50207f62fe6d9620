//! Measurement and presentation shared by every experiment: timing, the machine card,
//! figures, tables, parameter errors and the report convention.

pub mod budget;
pub mod check;
pub mod display;
pub mod error;
pub mod experiment;
pub mod figure;
pub mod findings;
pub mod fit;
pub mod limits;
pub mod machine;
pub mod noise;
pub mod os;
pub mod panics;
#[cfg(any(feature = "intro", feature = "threads", feature = "async_basics", feature = "advanced"))]
// the features that pull in rayon
pub mod rayon_pool;
pub mod report;
pub mod rng;
#[cfg(feature = "rt")]
pub mod rt;
pub mod table;
pub mod timing;
pub mod together;
pub mod wait;
pub mod work;

pub use check::Verdict;
pub use error::{Choice, LabError, ParamError, RunError, check_choices, check_cpu, check_list, check_range};
pub use experiment::{Experiment, Params, params_from_pairs};
pub use figure::{Figure, Legend, Plot, Point, Scale, Series, Style, fmt_num};
pub use findings::{Finding, Sure};
pub use machine::{MachineCard, cores, pin_current_thread, thread_count, usable_cpus};
pub use noise::{Load, LoadProbe};
pub use panics::one_line_panics;
pub use report::{Report, ReportResult, Rich, ToJson, WithReference};
pub use table::Table;
pub use timing::{Sampling, Stats};
