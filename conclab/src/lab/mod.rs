//! Measurement and presentation shared by every experiment: timing, the machine card,
//! figures, tables, parameter errors and the report convention.

pub mod display;
pub mod error;
pub mod figure;
pub mod fit;
pub mod machine;
pub mod os;
pub mod panics;
pub mod report;
#[cfg(feature = "rt")]
pub mod rt;
pub mod table;
pub mod timing;
pub mod together;
pub mod work;

pub use error::{ParamError, check_choice, check_cpu, check_list, check_range};
pub use figure::{Figure, Legend, Plot, Point, Scale, Series, Style, fmt_num};
pub use machine::{MachineCard, cores, pin_current_thread, thread_count, usable_cpus};
pub use panics::one_line_panics;
pub use report::{Report, ReportResult, Rich, ToJson};
pub use table::Table;
pub use timing::{Sampling, Stats};
