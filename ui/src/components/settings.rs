//! Settings: the display name, the password, presence privacy, the people blocked, and the
//! account's sessions (devices), each of which can be ended from here.
use parley_common::{BlockedUser, PrivacySettings, SessionInfo};
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

use super::{input_value, AppContext};
use crate::{
    state::{Action, Screen},
    time,
};

#[function_component(Settings)]
pub fn settings() -> Html {
    let ctx = use_context::<AppContext>().expect("AppContext");
    let back = {
        let ctx = ctx.clone();
        Callback::from(move |_| ctx.state.dispatch(Action::Show(Screen::Chats)))
    };
    html! {
        <div class="settings-page">
            <header class="top-bar">
                <button type="button" id="settings-back" class="logout" onclick={back}>{ "← Chats" }</button>
                <h1 class="settings-title">{ "Settings" }</h1>
            </header>
            <main class="settings">
                <Profile />
                <Password />
                <Privacy />
                <Blocked />
                <Sessions />
                <YourData />
                <DeleteAccount />
            </main>
        </div>
    }
}

/// A form's outcome, shown under it.
#[derive(Clone, PartialEq)]
enum Outcome {
    Idle,
    Busy,
    Done(String),
    Failed(String),
}

fn outcome_line(outcome: &Outcome, id: &str) -> Html {
    match outcome {
        Outcome::Done(text) => html! { <p class="info" id={id.to_string()} role="status">{ text }</p> },
        Outcome::Failed(text) => html! { <p class="form-error" id={id.to_string()} role="alert">{ text }</p> },
        Outcome::Idle | Outcome::Busy => html! { <p class="form-error" id={id.to_string()}></p> },
    }
}

#[function_component(Profile)]
fn profile() -> Html {
    let ctx = use_context::<AppContext>().expect("AppContext");
    let current = ctx.state.me.as_ref().map(|u| u.display_name.clone()).unwrap_or_default();
    let name = use_state(|| current.clone());
    let outcome = use_state(|| Outcome::Idle);
    let onsubmit = {
        let (ctx, name, outcome) = (ctx.clone(), name.clone(), outcome.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if *outcome == Outcome::Busy {
                return;
            }
            outcome.set(Outcome::Busy);
            let (ctx, value, outcome) = (ctx.clone(), (*name).trim().to_string(), outcome.clone());
            spawn_local(async move {
                match ctx.backend.update_profile(value).await {
                    Ok(user) => {
                        ctx.state.dispatch(Action::ProfileUpdated(user));
                        outcome.set(Outcome::Done("Saved.".into()));
                    }
                    Err(err) => outcome.set(Outcome::Failed(err.message)),
                }
            });
        })
    };
    let oninput = {
        let name = name.clone();
        Callback::from(move |e: InputEvent| name.set(input_value(&e)))
    };
    html! {
        <section class="card settings-section" aria-labelledby="profile-title">
            <h2 id="profile-title">{ "Profile" }</h2>
            <form {onsubmit} novalidate=true>
                <label for="settings-display-name">{ "Display name" }</label>
                <input id="settings-display-name" type="text" autocomplete="nickname" required=true maxlength="64"
                    value={(*name).clone()} {oninput} />
                <p class="hint">{ ctx.state.me.as_ref().map(|u| format!("Signed in as {}", u.email)).unwrap_or_default() }</p>
                { outcome_line(&outcome, "profile-outcome") }
                <button type="submit" id="settings-save-name" class="primary"
                    disabled={*outcome == Outcome::Busy || name.trim().is_empty() || *name == current}>{ "Save" }</button>
            </form>
        </section>
    }
}

#[function_component(Password)]
fn password() -> Html {
    let ctx = use_context::<AppContext>().expect("AppContext");
    let current = use_state(String::new);
    let new = use_state(String::new);
    let outcome = use_state(|| Outcome::Idle);
    let onsubmit = {
        let (ctx, current, new, outcome) = (ctx.clone(), current.clone(), new.clone(), outcome.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if *outcome == Outcome::Busy {
                return;
            }
            outcome.set(Outcome::Busy);
            let (ctx, current, new, outcome) = (ctx.clone(), current.clone(), new.clone(), outcome.clone());
            spawn_local(async move {
                match ctx.backend.change_password((*current).clone(), (*new).clone()).await {
                    Ok(()) => {
                        current.set(String::new());
                        new.set(String::new());
                        outcome.set(Outcome::Done("Password changed. Your other sessions have ended.".into()));
                    }
                    Err(err) if err.code == "invalid_credentials" => {
                        outcome.set(Outcome::Failed("The current password is not right.".into()))
                    }
                    Err(err) => outcome.set(Outcome::Failed(err.message)),
                }
            });
        })
    };
    let field = |set: UseStateHandle<String>| Callback::from(move |e: InputEvent| set.set(input_value(&e)));
    html! {
        <section class="card settings-section" aria-labelledby="password-title">
            <h2 id="password-title">{ "Password" }</h2>
            <form {onsubmit} novalidate=true>
                <label for="settings-current-password">{ "Current password" }</label>
                <input id="settings-current-password" type="password" autocomplete="current-password" required=true
                    value={(*current).clone()} oninput={field(current.clone())} />
                <label for="settings-new-password">{ "New password" }</label>
                <input id="settings-new-password" type="password" autocomplete="new-password" required=true
                    value={(*new).clone()} oninput={field(new.clone())} />
                <p class="hint">{ "At least 8 characters. Changing it ends your other sessions." }</p>
                { outcome_line(&outcome, "password-outcome") }
                <button type="submit" id="settings-change-password" class="primary"
                    disabled={*outcome == Outcome::Busy || current.is_empty() || new.is_empty()}>{ "Change password" }</button>
            </form>
        </section>
    }
}

#[function_component(Privacy)]
fn privacy() -> Html {
    let ctx = use_context::<AppContext>().expect("AppContext");
    let hidden = use_state(|| None::<bool>);
    let outcome = use_state(|| Outcome::Idle);
    {
        let (ctx, hidden, outcome) = (ctx.clone(), hidden.clone(), outcome.clone());
        use_effect_with((), move |_| {
            spawn_local(async move {
                match ctx.backend.privacy().await {
                    Ok(settings) => hidden.set(Some(settings.hide_presence)),
                    Err(err) => outcome.set(Outcome::Failed(err.message)),
                }
            });
        });
    }
    let onchange = {
        let (ctx, hidden, outcome) = (ctx.clone(), hidden.clone(), outcome.clone());
        Callback::from(move |e: Event| {
            let hide = e.target_unchecked_into::<web_sys::HtmlInputElement>().checked();
            let (ctx, hidden, outcome) = (ctx.clone(), hidden.clone(), outcome.clone());
            outcome.set(Outcome::Busy);
            spawn_local(async move {
                match ctx.backend.set_privacy(PrivacySettings { hide_presence: hide }).await {
                    Ok(settings) => {
                        hidden.set(Some(settings.hide_presence));
                        outcome.set(Outcome::Done(
                            if settings.hide_presence {
                                "Hidden. Nobody sees when you are online, and you see nobody's."
                            } else {
                                "Shown again to the people you have written to."
                            }
                            .into(),
                        ));
                    }
                    Err(err) => outcome.set(Outcome::Failed(err.message)),
                }
            });
        })
    };
    html! {
        <section class="card settings-section" aria-labelledby="privacy-title">
            <h2 id="privacy-title">{ "Privacy" }</h2>
            <p class="hint">
                { "Your online status and last seen show only to people you have started a chat with or written to, \
                   never to someone who merely knows your email." }
            </p>
            <label class="checkbox" for="settings-hide-presence">
                <input id="settings-hide-presence" type="checkbox" checked={hidden.unwrap_or(false)}
                    disabled={hidden.is_none() || *outcome == Outcome::Busy} {onchange} />
                { "Hide my online status and last seen from everyone" }
            </label>
            <p class="hint">{ "While they are hidden, you do not see anyone's either." }</p>
            { outcome_line(&outcome, "privacy-outcome") }
        </section>
    }
}

#[function_component(Blocked)]
fn blocked() -> Html {
    let ctx = use_context::<AppContext>().expect("AppContext");
    let list = use_state(|| None::<Vec<BlockedUser>>);
    let outcome = use_state(|| Outcome::Idle);
    let version = use_state(|| 0u32);
    {
        let (ctx, list, outcome) = (ctx.clone(), list.clone(), outcome.clone());
        use_effect_with(*version, move |_| {
            spawn_local(async move {
                match ctx.backend.blocked_users().await {
                    Ok(blocked) => list.set(Some(blocked.blocked)),
                    Err(err) => outcome.set(Outcome::Failed(err.message)),
                }
            });
        });
    }
    let unblock = {
        let (ctx, outcome, version) = (ctx.clone(), outcome.clone(), version.clone());
        move |user_id: i64| {
            let (ctx, outcome, version) = (ctx.clone(), outcome.clone(), version.clone());
            Callback::from(move |_| {
                let (ctx, outcome, version) = (ctx.clone(), outcome.clone(), version.clone());
                outcome.set(Outcome::Busy);
                spawn_local(async move {
                    match ctx.backend.unblock(user_id).await {
                        Ok(()) => {
                            ctx.state.dispatch(Action::BlockChanged { user_id, blocked: false });
                            outcome.set(Outcome::Done("Unblocked.".into()));
                        }
                        Err(err) => outcome.set(Outcome::Failed(err.message)),
                    }
                    version.set(*version + 1);
                });
            })
        }
    };
    let listing = match &*list {
        None => html! { <p class="muted">{ "Loading…" }</p> },
        Some(blocked) if blocked.is_empty() => {
            html! { <p class="muted" id="no-blocked">{ "You have blocked nobody." }</p> }
        }
        Some(blocked) => html! {
            <ul id="blocked-users" class="sessions">
                { for blocked.iter().map(|b| html! {
                    <li class="session" key={b.user_id}>
                        <div>
                            <p class="device">{ b.display_name.clone() }</p>
                            <p class="hint">{ format!("{} · blocked {}", b.email, time::long(&b.blocked_at)) }</p>
                        </div>
                        <button type="button" class="logout" id={format!("unblock-{}", b.user_id)}
                            disabled={*outcome == Outcome::Busy} onclick={unblock(b.user_id)}>{ "Unblock" }</button>
                    </li>
                }) }
            </ul>
        },
    };
    html! {
        <section class="card settings-section" aria-labelledby="blocked-title">
            <h2 id="blocked-title">{ "Blocked people" }</h2>
            <p class="hint">{ "They cannot write to you or see when you are online. Block someone from your chat with them." }</p>
            { listing }
            { outcome_line(&outcome, "blocked-outcome") }
        </section>
    }
}

#[function_component(Sessions)]
fn sessions() -> Html {
    let ctx = use_context::<AppContext>().expect("AppContext");
    let list = use_state(|| None::<Vec<SessionInfo>>);
    let outcome = use_state(|| Outcome::Idle);
    // Bumped to read the list again after a change.
    let version = use_state(|| 0u32);
    {
        let (ctx, list, outcome) = (ctx.clone(), list.clone(), outcome.clone());
        use_effect_with(*version, move |_| {
            spawn_local(async move {
                match ctx.backend.sessions().await {
                    Ok(sessions) => list.set(Some(sessions.sessions)),
                    Err(err) => outcome.set(Outcome::Failed(err.message)),
                }
            });
        });
    }
    let act = {
        let (ctx, outcome, version) = (ctx.clone(), outcome.clone(), version.clone());
        move |target: Option<i64>| {
            let (ctx, outcome, version) = (ctx.clone(), outcome.clone(), version.clone());
            Callback::from(move |_| {
                let (ctx, outcome, version) = (ctx.clone(), outcome.clone(), version.clone());
                outcome.set(Outcome::Busy);
                spawn_local(async move {
                    let result = match target {
                        Some(id) => ctx.backend.revoke_session(id).await,
                        None => ctx.backend.revoke_other_sessions().await,
                    };
                    match result {
                        Ok(()) => outcome.set(Outcome::Done(
                            if target.is_some() { "Session ended." } else { "Every other session ended." }.into(),
                        )),
                        Err(err) => outcome.set(Outcome::Failed(err.message)),
                    }
                    version.set(*version + 1);
                });
            })
        }
    };
    let listing = match &*list {
        None => html! { <p class="muted">{ "Loading…" }</p> },
        Some(sessions) => html! {
            <ul id="sessions" class="sessions">
                { for sessions.iter().map(|s| html! {
                    <li class="session" key={s.id} data-current={s.current.to_string()}>
                        <div>
                            <p class="device" title={s.device.clone()}>
                                { device_name(&s.device) }
                                if s.current { <span class="this-device">{ " · this device" }</span> }
                            </p>
                            <p class="hint">
                                { format!("Since {} · last used {}", time::long(&s.created_at), time::long(&s.last_used_at)) }
                            </p>
                        </div>
                        if !s.current {
                            <button type="button" class="logout" id={format!("revoke-session-{}", s.id)}
                                onclick={act(Some(s.id))}>{ "End" }</button>
                        }
                    </li>
                }) }
            </ul>
        },
    };
    let others = list.as_ref().is_some_and(|l| l.iter().any(|s| !s.current));
    html! {
        <section class="card settings-section" aria-labelledby="sessions-title">
            <h2 id="sessions-title">{ "Sessions" }</h2>
            <p class="hint">{ "Where your account is logged in. End any session you do not recognise." }</p>
            { listing }
            { outcome_line(&outcome, "sessions-outcome") }
            <button type="button" id="revoke-other-sessions" class="primary" disabled={!others || *outcome == Outcome::Busy}
                onclick={act(None)}>{ "Log out everywhere else" }</button>
        </section>
    }
}

#[function_component(YourData)]
fn your_data() -> Html {
    let ctx = use_context::<AppContext>().expect("AppContext");
    let outcome = use_state(|| Outcome::Idle);
    let onclick = {
        let (ctx, outcome) = (ctx.clone(), outcome.clone());
        Callback::from(move |_| {
            let (ctx, outcome) = (ctx.clone(), outcome.clone());
            outcome.set(Outcome::Busy);
            spawn_local(async move {
                match ctx.backend.export_data().await {
                    Ok(done) => outcome.set(Outcome::Done(done)),
                    Err(err) => outcome.set(Outcome::Failed(err.message)),
                }
            });
        })
    };
    html! {
        <section class="card settings-section" aria-labelledby="data-title">
            <h2 id="data-title">{ "Your data" }</h2>
            <p class="hint">{ "Everything this server keeps about your account, as one JSON file: your account, settings, \
                sessions, the people you blocked, and every chat with all its messages." }</p>
            { outcome_line(&outcome, "export-outcome") }
            <button type="button" id="settings-export" class="primary" disabled={*outcome == Outcome::Busy}
                {onclick}>{ "Download my data" }</button>
        </section>
    }
}

#[function_component(DeleteAccount)]
fn delete_account() -> Html {
    let ctx = use_context::<AppContext>().expect("AppContext");
    let password = use_state(String::new);
    let outcome = use_state(|| Outcome::Idle);
    let onsubmit = {
        let (ctx, password, outcome) = (ctx.clone(), password.clone(), outcome.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if *outcome == Outcome::Busy || password.is_empty() {
                return;
            }
            outcome.set(Outcome::Busy);
            let (ctx, password, outcome) = (ctx.clone(), password.clone(), outcome.clone());
            spawn_local(async move {
                match ctx.backend.delete_account((*password).clone()).await {
                    Ok(()) => ctx
                        .state
                        .dispatch(Action::LoggedOut { notice: Some("Your account was deleted. Goodbye!".into()) }),
                    Err(err) if err.code == "invalid_credentials" => {
                        outcome.set(Outcome::Failed("The password is not right.".into()))
                    }
                    Err(err) => outcome.set(Outcome::Failed(err.message)),
                }
            });
        })
    };
    let oninput = {
        let password = password.clone();
        Callback::from(move |e: InputEvent| password.set(input_value(&e)))
    };
    html! {
        <section class="card settings-section danger-zone" aria-labelledby="delete-title">
            <h2 id="delete-title">{ "Delete account" }</h2>
            <p class="hint">{ "Your account, settings and sessions are deleted and every device is logged out. \
                The people you wrote to see \"Deleted user\" in your place and keep your messages in their chats. \
                Your email can be used to sign up again. This cannot be undone." }</p>
            <form {onsubmit} novalidate=true>
                <label for="settings-delete-password">{ "Your password" }</label>
                <input id="settings-delete-password" type="password" autocomplete="current-password" required=true
                    value={(*password).clone()} {oninput} />
                { outcome_line(&outcome, "delete-outcome") }
                <button type="submit" id="settings-delete-account" class="danger"
                    disabled={*outcome == Outcome::Busy || password.is_empty()}>{ "Delete my account" }</button>
            </form>
        </section>
    }
}

/// "Firefox on Linux", "Parley desktop app": what people recognise, from a user agent (the full
/// string is the tooltip).
pub fn device_name(user_agent: &str) -> String {
    if user_agent.starts_with("Parley desktop") {
        return "Parley desktop app".into();
    }
    let browser = [("Edg/", "Edge"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"), ("Safari/", "Safari")]
        .iter()
        .find(|(token, _)| user_agent.contains(token))
        .map(|(_, name)| *name);
    let system = [
        ("Android", "Android"),
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(token, _)| user_agent.contains(token))
    .map(|(_, name)| *name);
    match (browser, system) {
        (Some(browser), Some(system)) => format!("{browser} on {system}"),
        (Some(name), None) | (None, Some(name)) => name.to_string(),
        (None, None) if user_agent.trim().is_empty() => "Unknown device".into(),
        (None, None) => user_agent.chars().take(60).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::device_name;

    #[test]
    fn devices_are_named_as_people_know_them() {
        let chrome_linux =
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";
        assert_eq!(device_name(chrome_linux), "Chrome on Linux");
        let firefox_mac = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:133.0) Gecko/20100101 Firefox/133.0";
        assert_eq!(device_name(firefox_mac), "Firefox on macOS");
        let safari_iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1";
        assert_eq!(device_name(safari_iphone), "Safari on iPhone");
        assert_eq!(device_name("Parley desktop/0.1.0"), "Parley desktop app");
        assert_eq!(device_name(""), "Unknown device");
        assert_eq!(device_name("curl/8.5.0"), "curl/8.5.0");
    }
}
