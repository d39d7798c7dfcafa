//! wasmfn schedule expressions in AWS's dialect (EventBridge rules and Scheduler):
//! `rate(N unit)` with minute granularity, and six-field `cron(min hour dom month dow year)`
//! where exactly one of day-of-month and day-of-week is `?` and Sunday is 1, not 0.

use std::time::Duration;

/// `rate(...)` for a fixed interval; AWS allows whole minutes, hours or days only.
pub fn rate(every: Duration) -> Result<String, String> {
    let secs = every.as_secs();
    if secs == 0 || !secs.is_multiple_of(60) || every.subsec_nanos() != 0 {
        return Err(format!(
            "every {} s cannot run on AWS, whose rate schedules count whole minutes",
            every.as_secs_f64()
        ));
    }
    let (n, unit) = [(86_400, "day"), (3_600, "hour"), (60, "minute")]
        .into_iter()
        .find(|(size, _)| secs.is_multiple_of(*size))
        .map(|(size, unit)| (secs / size, unit))
        .unwrap_or((secs / 60, "minute"));
    let plural = if n == 1 { "" } else { "s" };
    Ok(format!("rate({n} {unit}{plural})"))
}

/// `cron(...)` for a 5-field (or 6-field, leading seconds) cron expression.
pub fn cron(expression: &str) -> Result<String, String> {
    let mut fields: Vec<&str> = expression.split_whitespace().collect();
    if fields.len() == 6 {
        if fields[0] != "0" {
            return Err(format!(
                "`{expression}` fires at second {}; AWS schedules have minute precision \
                 (set the seconds field to 0 or drop it)",
                fields[0]
            ));
        }
        fields.remove(0);
    }
    let [minute, hour, dom, month, dow] = fields[..] else {
        return Err(format!("`{expression}` is not a 5-field cron expression"));
    };
    let (dom, dow) = match (dom, dow) {
        (dom, "*" | "?") => (dom.to_string(), "?".to_string()),
        ("*" | "?", dow) => ("?".to_string(), aws_weekdays(dow)?),
        _ => {
            return Err(format!(
                "`{expression}` restricts both day of month and day of week; AWS cron allows only \
                 one (split it into two schedules)"
            ))
        }
    };
    Ok(format!("cron({minute} {hour} {dom} {month} {dow} *)"))
}

/// Weekday numbers from cron's 0-7 (Sunday 0 or 7) to AWS's 1-7 (Sunday 1); names, steps
/// (`/2`) and nth-weekday counts (`#3`) are kept.
fn aws_weekdays(field: &str) -> Result<String, String> {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars().peekable();
    let mut after = None; // the character before the current number
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            let mut number = c.to_digit(10).unwrap_or(0);
            while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                number = number * 10 + d;
                chars.next();
            }
            if matches!(after, Some('/' | '#')) {
                out.push_str(&number.to_string());
            } else if number > 7 {
                return Err(format!("day of week `{number}` in `{field}` is not 0-7"));
            } else {
                out.push_str(&(number % 7 + 1).to_string());
            }
            after = Some('0');
        } else {
            out.push(c);
            after = Some(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_use_the_largest_whole_unit() {
        let r = |s| rate(Duration::from_secs(s));
        assert_eq!(r(60).unwrap(), "rate(1 minute)");
        assert_eq!(r(300).unwrap(), "rate(5 minutes)");
        assert_eq!(r(7200).unwrap(), "rate(2 hours)");
        assert_eq!(r(86_400).unwrap(), "rate(1 day)");
        assert_eq!(r(90 * 60).unwrap(), "rate(90 minutes)");
        assert!(r(30).unwrap_err().contains("whole minutes"));
    }

    #[test]
    fn cron_gets_aws_fields() {
        assert_eq!(cron("0 3 * * *").unwrap(), "cron(0 3 * * ? *)");
        assert_eq!(cron("*/15 * 1 * *").unwrap(), "cron(*/15 * 1 * ? *)");
        assert_eq!(cron("0 9 * * 1-5").unwrap(), "cron(0 9 ? * 2-6 *)");
        assert_eq!(cron("0 9 * * 0,6").unwrap(), "cron(0 9 ? * 1,7 *)");
        assert_eq!(cron("0 9 * * 7").unwrap(), "cron(0 9 ? * 1 *)");
        assert_eq!(cron("0 9 * * MON-FRI").unwrap(), "cron(0 9 ? * MON-FRI *)");
        assert_eq!(cron("0 9 * * 5#3").unwrap(), "cron(0 9 ? * 6#3 *)");
        assert_eq!(cron("0 0 9 * * */2").unwrap(), "cron(0 9 ? * */2 *)");
        assert!(cron("30 0 9 * * *")
            .unwrap_err()
            .contains("minute precision"));
        assert!(cron("0 9 1 * MON").unwrap_err().contains("only one"));
        assert!(cron("0 9 * * 8").unwrap_err().contains("not 0-7"));
    }
}
