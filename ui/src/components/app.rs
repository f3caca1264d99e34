//! The root: holds the state, starts the session, and picks the screen.
use gloo_timers::callback::Timeout;
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

use super::{
    chat_page::ChatPage,
    choose_server::ChooseServer,
    login::Login,
    reset_password::{ForgotPassword, ResetPassword},
    settings::Settings,
    signup::Signup,
    verify::Verify,
    AppContext, BackendHandle,
};
use crate::{
    backend::Incoming,
    state::{Action, Screen, State, TYPING_SHOWS_MS},
};

#[derive(Properties, PartialEq)]
pub struct AppProps {
    pub backend: BackendHandle,
}

#[function_component(App)]
pub fn app(props: &AppProps) -> Html {
    let state = use_reducer(State::default);
    let backend = props.backend.clone();

    // Which server (the desktop app asks first), and who are we? The HttpOnly cookie answers for us
    // after a reload in a browser, the native side's stored session in the desktop app.
    {
        let backend = backend.clone();
        let dispatcher = state.dispatcher();
        use_effect_with((), move |_| {
            spawn_local(async move {
                if backend.chooses_server() {
                    match backend.server_url().await {
                        Ok(Some(url)) => dispatcher.dispatch(Action::Server(url)),
                        _ => {
                            dispatcher.dispatch(Action::Show(Screen::Server));
                            return;
                        }
                    }
                }
                if let Ok(instance) = backend.instance().await {
                    dispatcher.dispatch(Action::Instance(instance));
                }
                match backend.me().await {
                    Ok(Some(user)) => dispatcher.dispatch(Action::LoggedIn(user)),
                    _ => dispatcher.dispatch(Action::Show(Screen::Login)),
                }
            });
        });
    }

    // Logged in: load the chat list, then go live from its cursor.
    {
        let backend = backend.clone();
        let dispatcher = state.dispatcher();
        let me = state.me.as_ref().map(|u| u.id);
        use_effect_with(me, move |me| {
            if me.is_some() {
                spawn_local(async move {
                    let Ok(list) = backend.chats().await else {
                        dispatcher.dispatch(Action::LoggedOut { notice: Some("Could not load your chats.".into()) });
                        return;
                    };
                    dispatcher.dispatch(Action::ChatsLoaded(list.chats));
                    let listener = {
                        let dispatcher = dispatcher.clone();
                        let backend = backend.clone();
                        let connected_before = std::rc::Rc::new(std::cell::Cell::new(false));
                        Callback::from(move |incoming: Incoming| {
                            // Back after a disconnection: presence changed unseen meanwhile (events
                            // come back through the cursor, presence does not), so refresh the list.
                            if matches!(incoming, Incoming::Hello(_)) && connected_before.replace(true) {
                                let (backend, dispatcher) = (backend.clone(), dispatcher.clone());
                                spawn_local(async move {
                                    if let Ok(list) = backend.chats().await {
                                        dispatcher.dispatch(Action::ChatsLoaded(list.chats));
                                    }
                                });
                            }
                            if matches!(incoming, Incoming::Typing { .. }) {
                                let dispatcher = dispatcher.clone();
                                Timeout::new(TYPING_SHOWS_MS as u32 + 100, move || {
                                    dispatcher.dispatch(Action::ExpireTyping { now: crate::state::now_ms() })
                                })
                                .forget();
                            }
                            dispatcher.dispatch(Action::Incoming(incoming));
                        })
                    };
                    backend.connect(list.cursor, listener);
                });
            }
        });
    }

    // The desktop app raises no notification for the chat on screen.
    {
        let backend = backend.clone();
        let on_screen = state.selected.filter(|_| state.screen == Screen::Chats);
        use_effect_with(on_screen, move |on_screen| backend.viewing(*on_screen));
    }

    let context = AppContext { state: state.clone(), backend };
    let screen = match &state.screen {
        Screen::Loading => html! { <main class="centered" aria-busy="true"><p class="muted">{ "Loading…" }</p></main> },
        Screen::Server => html! { <ChooseServer /> },
        Screen::Signup => html! { <Signup /> },
        Screen::Verify { signup_id, email } => html! { <Verify signup_id={signup_id.clone()} email={email.clone()} /> },
        Screen::Login => html! { <Login /> },
        Screen::Chats => html! { <ChatPage /> },
        Screen::Settings => html! { <Settings /> },
        Screen::ForgotPassword => html! { <ForgotPassword /> },
        Screen::ResetPassword { reset_id, email } => {
            html! { <ResetPassword reset_id={reset_id.clone()} email={email.clone()} /> }
        }
    };
    html! {
        <ContextProvider<AppContext> {context}>
            { screen }
        </ContextProvider<AppContext>>
    }
}
