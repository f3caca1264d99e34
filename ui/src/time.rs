//! Times shown in the browser's locale.
use wasm_bindgen::JsValue;

fn date(rfc3339: &str) -> Option<js_sys::Date> {
    let date = js_sys::Date::new(&JsValue::from_str(rfc3339));
    (!date.get_time().is_nan()).then_some(date)
}

fn locale() -> String {
    let language = web_sys::window().and_then(|w| w.navigator().language());
    // WebKitGTK reports the POSIX locale ("C") when none is set, which Intl refuses with a
    // RangeError that would abort the render.
    language.filter(|tag| is_locale(tag)).unwrap_or_else(|| "en".into())
}

fn is_locale(tag: &str) -> bool {
    use wasm_bindgen::JsCast;
    let canonical = js_sys::Reflect::get(&js_sys::global(), &"Intl".into())
        .and_then(|intl| js_sys::Reflect::get(&intl, &"getCanonicalLocales".into()))
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
    canonical.is_some_and(|f| f.call1(&JsValue::UNDEFINED, &JsValue::from_str(tag)).is_ok())
}

/// "14:05" today, "Mon 14:05" this week, else a short date.
pub fn short(rfc3339: &str) -> String {
    let Some(date) = date(rfc3339) else {
        return String::new();
    };
    let now = js_sys::Date::new_0();
    let age_days = (now.get_time() - date.get_time()) / 86_400_000.0;
    let same_day = now.to_date_string() == date.to_date_string();
    let options = js_sys::Object::new();
    let set = |key: &str, value: &str| {
        let _ = js_sys::Reflect::set(&options, &key.into(), &value.into());
    };
    if same_day {
        set("hour", "2-digit");
        set("minute", "2-digit");
    } else if age_days < 6.0 {
        set("weekday", "short");
        set("hour", "2-digit");
        set("minute", "2-digit");
    } else {
        set("day", "numeric");
        set("month", "short");
    }
    date.to_locale_string(&locale(), &options).into()
}

/// Date and time in full, for tooltips and "last seen".
pub fn long(rfc3339: &str) -> String {
    match date(rfc3339) {
        Some(date) => date.to_locale_string(&locale(), &js_sys::Object::new()).into(),
        None => String::new(),
    }
}
