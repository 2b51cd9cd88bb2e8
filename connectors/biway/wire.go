package biway

// Channels a message can go out on. ChannelAuto lets the partner choose RCS where the device
// can take it, SMS otherwise.
const (
	ChannelSMS  = "sms"
	ChannelRCS  = "rcs"
	ChannelAuto = "auto"
)

// Submission is one message to one recipient (POST /messenger/submit).
type Submission struct {
	// To is the recipient: E.164 or a French national number, normalised before sending.
	To string `json:"to"`
	// Canal is ChannelSMS, ChannelRCS or ChannelAuto; empty means auto.
	Canal string `json:"canal"`
	// Modele is a template id; empty sends Texte as is.
	Modele string `json:"modele,omitempty"`
	Texte  string `json:"texte,omitempty"`
	// Variables fill the template's placeholders.
	Variables map[string]string `json:"variables,omitempty"`
	// Reference is our event id: the partner answers a known reference with its first
	// message_id, so a retry never messages a person twice. Required.
	Reference string `json:"reference"`
}

// SubmitAnswer is the partner's 202 to a submission.
type SubmitAnswer struct {
	MessageID string `json:"message_id"`
	Statut    string `json:"statut"`
}

// Recipient is one addressee of a broadcast.
type Recipient struct {
	To        string            `json:"to"`
	Variables map[string]string `json:"variables,omitempty"`
	Reference string            `json:"reference"`
}

// Broadcast is a mass sending of one template (POST /messenger/broadcast).
type Broadcast struct {
	Destinataires []Recipient `json:"destinataires"`
	Modele        string      `json:"modele"`
	Canal         string      `json:"canal"`
}

// Refusal is a recipient a broadcast did not take, with the reason.
type Refusal struct {
	To     string `json:"to"`
	Raison string `json:"raison"`
}

// BroadcastAnswer is the partner's 202 to a broadcast. Client.Broadcast adds to Refuses the
// recipients it refused locally.
type BroadcastAnswer struct {
	BroadcastID string    `json:"broadcast_id"`
	Acceptes    int       `json:"acceptes"`
	Refuses     []Refusal `json:"refuses"`
}

// Conversation is one message to a few recipients (POST /messenger/conversation).
type Conversation struct {
	Destinataires []string          `json:"destinataires"`
	Canal         string            `json:"canal"`
	Modele        string            `json:"modele,omitempty"`
	Texte         string            `json:"texte,omitempty"`
	Variables     map[string]string `json:"variables,omitempty"`
	Reference     string            `json:"reference"`
}

// ConversationAnswer is the partner's answer to a conversation.
type ConversationAnswer struct {
	ConversationID string `json:"conversation_id"`
	Statut         string `json:"statut"`
}

// Company is an establishment to register under the partner account (POST /client/company).
type Company struct {
	Nom        string `json:"nom"`
	Siret      string `json:"siret"`
	Adresse    string `json:"adresse,omitempty"`
	CodePostal string `json:"code_postal,omitempty"`
	Ville      string `json:"ville,omitempty"`
	Email      string `json:"email,omitempty"`
	Telephone  string `json:"telephone,omitempty"`
}

// Account is a user account to create for an establishment (POST /system/account).
type Account struct {
	Etablissement string `json:"etablissement"` // the company id
	Nom           string `json:"nom"`
	Prenom        string `json:"prenom,omitempty"`
	Email         string `json:"email"`
	Telephone     string `json:"telephone,omitempty"`
}

// Agent is a chat environment to create (POST /chatbot/agent).
type Agent struct {
	Nom         string `json:"nom"`
	Description string `json:"description,omitempty"`
	Logo        string `json:"logo,omitempty"` // URL
	Site        string `json:"site,omitempty"` // URL
}

// RCSTester is a device allowed to receive RCS from an agent under test
// (POST /messenger/rcs-tester).
type RCSTester struct {
	Agent     string `json:"agent"`
	Telephone string `json:"telephone"` // a mobile, normalised like Submission.To
}

// Template is a reusable message (POST /messenger/template).
type Template struct {
	Nom       string   `json:"nom"`
	Canal     string   `json:"canal"`
	Texte     string   `json:"texte"`
	Variables []string `json:"variables,omitempty"` // the placeholder names Texte uses
}

// ChatToken asks for a personal chat link (POST /chatbot/token).
type ChatToken struct {
	Agent     string            `json:"agent"`
	Reference string            `json:"reference,omitempty"`
	Variables map[string]string `json:"variables,omitempty"`
}

// ChatTokenAnswer is the token, the chat URL to put in a message, and its expiry as the
// partner wrote it ("aaaa-mm-jj hh:mm:ss", Europe/Paris).
type ChatTokenAnswer struct {
	Jeton      string `json:"jeton"`
	URL        string `json:"url"`
	Expiration string `json:"expiration,omitempty"`
}

// Entity is the partner's answer to a creation: the new id and its state ("pending" until
// verified; later changes arrive as callbacks).
type Entity struct {
	ID   string `json:"id"`
	Etat string `json:"etat"`
}

// errorBody is the partner's error shape.
type errorBody struct {
	Error   bool   `json:"error"`
	Message string `json:"message"`
	Code    string `json:"code"`
}
