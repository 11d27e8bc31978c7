//! Anomaly baselines: a prediction for the current value of a signal from the same time one day
//! and one week earlier, corrected for the trend, and a band around it. The design and its
//! trade-offs are explained in docs/alerts.md; in short:
//!
//! - **Signals** are recorded rate-window series of the fast group: the request rate, the average
//!   response time and the error ratio. The two ratios are absent while there is no traffic, so
//!   every average and quantile over time below skips idle samples instead of turning NaN.
//! - **Reference**: the mean of the signal over `smoothing` (1h) centred on the same time one
//!   `week` earlier, or, when that window holds no sample (no traffic then), one `day` earlier.
//! - **Trend**: the reference is shifted by the typical change since one season earlier: the
//!   median, over the last day, of the signal minus its value one season before. Differences at
//!   the same time of day cancel the daily cycle, and a median ignores anything shorter than half
//!   a day, so an anomaly cannot shift its own prediction; the reference window lies a day back,
//!   so it cannot widen its own band either.
//! - **Band**: prediction ± max(`sigmas` × the standard deviation in the reference window,
//!   `min_change` × prediction, an absolute floor per signal); the lower band stops at 0.
//! - **History**: predictions need a week and a day of recorded history (the day a week ago holds
//!   75 % of the samples of the last day), so a young service, or new rules, get no anomaly alert
//!   at all rather than false ones, such as a Monday predicted from a Sunday.

use super::Settings;
use super::rules::{Rule, names, of_job};
use super::units::{PromDuration, num};

/// What an anomaly alert watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    RequestRate,
    AverageLatency,
    ErrorRatio,
}

impl Signal {
    pub const ALL: [Signal; 3] = [
        Signal::RequestRate,
        Signal::AverageLatency,
        Signal::ErrorRatio,
    ];

    /// The recorded series the signal is read from.
    pub fn series(self, settings: &Settings) -> String {
        let base = settings.rate_window;
        match self {
            Signal::RequestRate => names::requests(base),
            Signal::AverageLatency => names::mean_latency(base),
            Signal::ErrorRatio => names::error_ratio(base),
        }
    }

    /// Changes smaller than this are never anomalies: for the request rate, fewer than
    /// `--min-events` requests per rate window; for the latency, the first histogram bucket; for
    /// the error ratio, the whole error budget of the availability SLO.
    pub fn absolute_floor(self, settings: &Settings) -> f64 {
        match self {
            Signal::RequestRate => f64::from(settings.min_events) / settings.rate_window.secs_f64(),
            Signal::AverageLatency => settings
                .app
                .duration_buckets
                .first()
                .copied()
                .unwrap_or(0.0),
            Signal::ErrorRatio => settings.error_budget(),
        }
    }

    /// The recorded prediction, band and helper series of the signal.
    pub fn derived(self, settings: &Settings, role: Role) -> String {
        names::derived(&self.series(settings), role.suffix())
    }
}

/// The series recorded per signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The signal minus its value one week earlier.
    WeekChange,
    /// The signal minus its value one day earlier.
    DayChange,
    /// Standard deviation in the reference window.
    Noise,
    Prediction,
    BandWidth,
    UpperBand,
    LowerBand,
}

impl Role {
    fn suffix(self) -> &'static str {
        match self {
            Role::WeekChange => "week_change",
            Role::DayChange => "day_change",
            Role::Noise => "noise",
            Role::Prediction => "prediction",
            Role::BandWidth => "band_width",
            Role::UpperBand => "upper_band",
            Role::LowerBand => "lower_band",
        }
    }
}

/// Samples of the request-rate signal over the last day: the history every reference needs.
pub fn history_series(settings: &Settings) -> String {
    names::derived(&Signal::RequestRate.series(settings), "samples_per_day")
}

/// Share of a day's samples that the day before a reference must have, as a PromQL literal.
const HISTORY_COVERAGE: f64 = 0.75;

/// The recording rules of the anomaly group.
pub fn recording_rules(settings: &Settings) -> Vec<Rule> {
    let anomaly = &settings.anomaly;
    let day = anomaly.day;
    let smoothing = anomaly.smoothing;
    let job = |series: &str| of_job(series, settings);
    let history = history_series(settings);
    let mut rules = vec![Rule::record(
        history.clone(),
        format!(
            "count_over_time({}[{day}])",
            job(&Signal::RequestRate.series(settings))
        ),
    )];
    // `reference(season)` is the window of length `smoothing` centred one season ago.
    let half = PromDuration::from_millis(smoothing.millis() / 2);
    let offset = |season: PromDuration| PromDuration::from_millis(season.millis() - half.millis());
    // A week and a day of history: the day before the weekly reference was recorded (almost)
    // as fully as the last day.
    let history = job(&history);
    let history_ok = format!(
        "{history} offset {} >= {} * {history}",
        anomaly.week,
        num(HISTORY_COVERAGE)
    );
    for signal in Signal::ALL {
        let series = job(&signal.series(settings));
        let noise = signal.derived(settings, Role::Noise);
        let prediction = signal.derived(settings, Role::Prediction);
        let width = signal.derived(settings, Role::BandWidth);
        let change = |season: PromDuration| {
            let role = if season == anomaly.week {
                Role::WeekChange
            } else {
                Role::DayChange
            };
            signal.derived(settings, role)
        };
        // The value a season ago, plus the typical change since the same time a season earlier
        // during the last day.
        let reference = |season: PromDuration| {
            format!(
                "(avg_over_time({series}[{smoothing}] offset {}) + quantile_over_time(0.5, {}[{day}]))",
                offset(season),
                job(&change(season))
            )
        };
        let spread = |season: PromDuration| {
            format!(
                "stddev_over_time({series}[{smoothing}] offset {})",
                offset(season)
            )
        };
        let min_change = num(anomaly.min_change);
        for season in [anomaly.week, day] {
            rules.push(Rule::record(
                change(season),
                format!("{series} - {series} offset {season}"),
            ));
        }
        let (noise_of_job, prediction_of_job, width_of_job) =
            (job(&noise), job(&prediction), job(&width));
        rules.extend([
            Rule::record(
                prediction,
                format!(
                    "clamp_min(\n  (\n    {}\n    or\n    {}\n  )\n  and\n  {history_ok},\n  0\n)",
                    reference(anomaly.week),
                    reference(day)
                ),
            ),
            Rule::record(
                noise,
                format!("{}\nor\n{}", spread(anomaly.week), spread(day)),
            ),
            Rule::record(
                width,
                format!(
                    "clamp_min(\n  {sigmas} * {noise_of_job} > {min_change} * {prediction_of_job}\n  or\n  {min_change} * {prediction_of_job},\n  {floor}\n)",
                    sigmas = num(anomaly.sigmas),
                    floor = num(signal.absolute_floor(settings)),
                ),
            ),
            Rule::record(
                signal.derived(settings, Role::UpperBand),
                format!("{prediction_of_job} + {width_of_job}"),
            ),
            Rule::record(
                signal.derived(settings, Role::LowerBand),
                format!("clamp_min({prediction_of_job} - {width_of_job}, 0)"),
            ),
        ]);
    }
    rules
}
